# TAP output for the shell suites: pass, fail and check print "ok N - ..." / "not ok N - ...";
# the suite ends with `echo "1..$n"` and exits with `[ "$failures" -eq 0 ]`. Sourced.
n=0
failures=0

pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass "$1"; else
    fail "$1"; echo "#   expected:"; sed 's/^/#   /' <<<"$2"; echo "#   got:"; sed 's/^/#   /' <<<"$3"
  fi
}
