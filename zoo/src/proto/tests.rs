//! JSON shape tests of the wire protocol.

use super::*;

#[test]
fn request_json_shapes_are_stable() {
    let add: Request = serde_json::from_str(r#"{"op":"add","key":"k","value":-3}"#).unwrap();
    assert_eq!(
        add,
        Request::Add {
            key: "k".into(),
            value: -3
        }
    );
    let read: Request = serde_json::from_str(r#"{"op":"read","key":"k"}"#).unwrap();
    assert_eq!(
        read,
        Request::Read {
            key: "k".into(),
            local: false
        }
    );
    let role: Request = serde_json::from_str(r#"{"op":"role"}"#).unwrap();
    assert_eq!(role, Request::Role);
    assert_eq!(
        serde_json::to_string(&Request::Read {
            key: "k".into(),
            local: true
        })
        .unwrap(),
        r#"{"op":"read","key":"k","local":true}"#
    );
}

#[test]
fn response_json_shapes_are_stable() {
    let added = Response::Added(WriteAck {
        key: "k".into(),
        value: 1,
        master: "n1".into(),
        epoch: 2,
    });
    assert_eq!(
        serde_json::to_string(&added).unwrap(),
        r#"{"type":"added","key":"k","value":1,"master":"n1","epoch":2}"#
    );
    let values: Response = serde_json::from_str(
        r#"{"type":"values","key":"k","values":[1,2],"node":"n3","role":"master","epoch":4}"#,
    )
    .unwrap();
    assert_eq!(
        values,
        Response::Values(ReadReply {
            key: "k".into(),
            values: vec![1, 2],
            node: "n3".into(),
            role: RoleKind::Master,
            epoch: 4,
        })
    );
    let err = Response::Error(ErrorReply::indeterminate(ErrorCode::ForwardLost, "x"));
    assert_eq!(
        serde_json::to_string(&err).unwrap(),
        r#"{"type":"error","code":"forward_lost","outcome":"indeterminate","message":"x"}"#
    );
    let role = Response::Role(RoleInfo {
        node: "n2".into(),
        role: RoleKind::Replica,
        epoch: 1,
        master: None,
        lineage: Lineage {
            epoch: 1,
            node: "n1".into(),
        },
        offset: 0,
        commit: None,
        control: None,
    });
    let text = serde_json::to_string(&role).unwrap();
    assert_eq!(
        text,
        r#"{"type":"role","node":"n2","role":"replica","epoch":1,"master":null,"lineage":{"epoch":1,"node":"n1"},"offset":0}"#
    );
    assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), role);
}

#[test]
fn malformed_requests_are_rejected() {
    for line in [
        r#"{"op":"add","key":"k"}"#,
        r#"{"op":"add","key":"k","value":"x"}"#,
        r#"{"op":"add","key":"k","value":1,"extra":2}"#,
        r#"{"op":"fly"}"#,
        r#"[]"#,
        "not json",
    ] {
        assert!(serde_json::from_str::<Request>(line).is_err(), "{line}");
    }
}
