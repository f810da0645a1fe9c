//! Property test: random small concurrent register and cas-register histories (with
//! info, fail and never-completed ops, one or two keys) checked by the WGL search and
//! by a brute-force oracle that tries every order must agree. A fast subset runs
//! here; the benchmark (`cargo bench -p checkers --bench corpus`) runs 100,000.

mod common;

#[test]
fn search_agrees_with_brute_force_on_random_histories() {
    let stats = common::oracle_run(4000, 0x0dd_ba11);
    let invalid = stats.cases - stats.valid;
    // Both answers must be well represented, or the comparison would prove little.
    assert!(
        stats.valid * 5 >= stats.cases,
        "only {} of {} valid",
        stats.valid,
        stats.cases
    );
    assert!(
        invalid * 5 >= stats.cases,
        "only {invalid} of {} invalid",
        stats.cases
    );
}
