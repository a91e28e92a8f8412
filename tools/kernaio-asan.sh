#!/usr/bin/env bash
# kernaio's test suite against a copy of the extension built with AddressSanitizer (`make asan`).
#
# The copy lives in build/asan/kernaio/py/kernaio (the checkout's own build is not touched) and
# comes first on PYTHONPATH. Python itself is not instrumented, so libasan is preloaded, and
# PYTHONMALLOC=malloc sends Python's objects through ASan's allocator too: a use-after-free of a
# buffer or an object the extension released early is reported, not silently survived.
# Leak detection is off: CPython does not free everything at exit, which LeakSanitizer would
# report as thousands of leaks; the leak test measures memory instead, over KERNAIO_LEAK_READS
# reads (a million here). ASan's quarantine (freed memory held back to catch late uses) is kept
# small so that the test's RSS measure sees leaks rather than the quarantine filling up.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/build/asan/kernaio
rm -rf "$out" && mkdir -p "$out/py"
cp -r py/kernaio "$out/py/"
rm -rf "$out/py/kernaio"/*.so "$out/py/kernaio/tests" "$out/py/kernaio/__pycache__"
(cd "$out/py/kernaio" &&
    CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address" \
    "$root/.venv/bin/python" setup.py --quiet build_ext --inplace \
        --build-temp "$out/tmp" --build-lib "$out/tmp/lib" >/dev/null)

export LD_PRELOAD; LD_PRELOAD=$(gcc -print-file-name=libasan.so)
# pytest captures file descriptor 2 during a test, so ASan writes its reports to files instead.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:quarantine_size_mb=16:allocator_may_return_null=1:log_path=$out/report"
export PYTHONMALLOC=malloc PYTHONPATH="$out/py:$root/py" KERNAIO_LEAK_READS=${KERNAIO_LEAK_READS:-1000000}
where=$("$root/.venv/bin/python" -c 'import kernaio._kernaio as k; print(k.__file__)')
[[ $where == "$out"/* ]] || { echo "asan: imported $where, not the ASan build" >&2; exit 1; }
echo "asan: kernaio's tests on $where (${KERNAIO_LEAK_READS} reads in the leak test)"
# test_strace traces a child under strace, which must not inherit the preloaded runtime.
status=0
"$root/.venv/bin/python" -m pytest -c pytest.ini -q -p no:cacheprovider py/kernaio/tests -k "not strace" || status=$?
found=0
compgen -G "$out/report.*" >/dev/null && found=1
# The outcome, for make bench's "nothing lost" target (bench/lost.py), one record per number of
# reads (make test's 100,000 do not replace make asan's million): counted only for these sources.
sources=$(env -u LD_PRELOAD PYTHONPATH="$root/py" "$root/.venv/bin/python" -c 'from bench.lost import sources_hash; print(sources_hash())')
printf '{"exit": %d, "reads": %d, "sources": "%s"}\n' "$(( found ? 1 : status ))" "$KERNAIO_LEAK_READS" "$sources" \
    > "$root/build/asan/kernaio-status-$KERNAIO_LEAK_READS.json"
if (( found )); then
    echo "asan: AddressSanitizer found a memory error in kernaio:" >&2
    cat "$out"/report.* >&2
    exit 1
fi
exit $status
