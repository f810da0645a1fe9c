#!/bin/sh
# Shows `splitbrain doctor` on the lab, then on a node that has no iptables: a second
# sshd in lab node n3's network namespace (port 2222), started in a private mount
# namespace whose /usr/sbin is a tmpfs of links to everything but iptables*,
# ip6tables* and xtables*. Nothing outside that mount namespace changes; the extra
# sshd is killed and the lab taken down at the end. Needs root and a built
# target/debug/splitbrain; holds the lab lock while it runs (as the lab tests do).
# The same steps, with assertions, are harness/tests/doctor_lab.rs.
set -u
SB=${SB:-target/debug/splitbrain}
STATE=/var/lib/splitbrain/lab
exec 9>/run/lock/splitbrain-lab-use.lock
flock -w 900 9 || { echo "the lab stayed busy" >&2; exit 3; }
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    SPLITBRAIN_LAB_LOCK_HELD=1 "$SB" lab down >/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
SPLITBRAIN_LAB_LOCK_HELD=1 "$SB" lab up >/dev/null || exit 3

echo '$ splitbrain doctor'
"$SB" doctor --results-dir "$tmp/results"
echo "exit $?"

sed -e 's/^ListenAddress .*/ListenAddress 10.77.77.13:2222/' -e 's/^PidFile .*/PidFile none/' \
    "$STATE/n3/sshd_config" > "$tmp/sshd_config"
mkdir "$tmp/orig-sbin"
ip netns exec sb-n3 unshare --mount --propagation private sh -c "
    set -e; mount --bind /usr/sbin $tmp/orig-sbin; mount -t tmpfs -o mode=755 sb-hide /usr/sbin
    for f in $tmp/orig-sbin/*; do b=\${f##*/}; case \$b in iptables*|ip6tables*|xtables*) ;; *) ln -s \"\$f\" \"/usr/sbin/\$b\";; esac; done
    exec $tmp/orig-sbin/sshd -D -e -f $tmp/sshd_config" 2>/dev/null &
pid=$!
i=0; until timeout 1 bash -c "exec 3<>/dev/tcp/10.77.77.13/2222" 2>/dev/null || [ $i -ge 50 ]; do sleep 0.1; i=$((i+1)); done
grep '^10.77.77.13 ' "$STATE/known_hosts" | sed 's/^10.77.77.13 /[10.77.77.13]:2222 /' > "$tmp/known_hosts"
echo "n3-noipt 10.77.77.13:2222 workdir=$STATE/work/n3" > "$tmp/nodes"
echo
echo '$ splitbrain doctor --nodes-file nodes --ssh-private-key /var/lib/splitbrain/lab/id_ed25519 --known-hosts known_hosts'
"$SB" doctor --nodes-file "$tmp/nodes" --ssh-private-key "$STATE/id_ed25519" \
    --known-hosts "$tmp/known_hosts" --results-dir "$tmp/results"
echo "exit $?"
