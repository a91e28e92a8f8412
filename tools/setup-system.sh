#!/usr/bin/env bash
# Install the system packages the workshop needs, on Debian or Ubuntu; elsewhere, say what is missing.
#
#   tools/setup-system.sh            the packages every lab needs
#   tools/setup-system.sh slides     also Node.js and npm, for `make slides` (and Chromium on Debian,
#                                    optional: the deck's PDF and its screenshot check)
#   tools/setup-system.sh --list [slides]   print the packages it would want on an empty machine,
#                                    one per line, and install nothing (tools/offline-cache.sh uses it)
#   tools/setup-system.sh node       Node.js and npm without Chromium (the container image)
#   tools/setup-system.sh container  also podman (with runc) and debootstrap, for `make test-container`
#
# Idempotent and quick when everything is there: it asks dpkg, and calls apt only for what is missing.
# As root it runs apt-get itself; with password-less sudo it uses sudo; otherwise it prints the
# exact command and stops.
#
# With OFFLINE_CACHE=DIR (a folder filled by tools/offline-cache.sh), apt takes the packages from the
# local repository DIR/apt and from nothing else: no network is needed.
set -euo pipefail

list_only=false
[[ " $* " == *" --list "* ]] && list_only=true

# ca-certificates: pip's HTTPS to PyPI; every desktop has it, a minimal container image does not.
required=(gcc make libc6-dev libaio-dev liburing-dev strace python3-dev python3-venv openssl fio netcat-openbsd
          ca-certificates)
slides_packages=()   # optional: installed when possible, like perf below
if [[ " $* " == *" slides "* || " $* " == *" node "* ]]; then
    # A working command counts: NodeSource's nodejs bundles npm and conflicts with Debian's npm package.
    { $list_only || ! command -v node >/dev/null 2>&1; } && required+=(nodejs)
    { $list_only || ! command -v npm >/dev/null 2>&1; } && required+=(npm)
fi
if [[ " $* " == *" container "* ]]; then
    # runc, not crun: crun refuses hosts with a hybrid cgroup v1/v2 setup (tools/container/test.py).
    required+=(podman runc debootstrap)
fi
if [[ " $* " == *" slides "* ]]; then
    # Chromium only renders the PDF and the screenshot check (a large download, about a minute):
    # Debian's package, not Ubuntu's (a snap, which does not run in containers; set CHROME_PATH there).
    if { $list_only || { [ -z "${CHROME_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1; }; } &&
        grep -q '^ID=debian' /etc/os-release 2>/dev/null; then
        slides_packages=(chromium)
    fi
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "setup: this is not a Debian/Ubuntu system, so nothing is installed automatically."
    echo "       Install by hand: a C compiler, make, libaio and liburing headers, strace, perf,"
    echo "       Python >= 3.11 with venv and headers (see README.md, Troubleshooting)."
    exit 0
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# perf is packaged per distribution (and on Ubuntu per kernel); it is optional: the labs that need it
# skip with a reason when it is missing.
# Asked of dpkg, not of PATH: a perf that is installed but off PATH is not fixed by apt again
# (make doctor says where it is and what to add to PATH).
perf_packages=()
if $list_only || ! command -v perf >/dev/null 2>&1 || ! perf --version >/dev/null 2>&1; then
    if grep -qi ubuntu /etc/os-release 2>/dev/null; then
        wanted=(linux-tools-common "linux-tools-$(uname -r)")
    else
        wanted=(linux-perf)
    fi
    for pkg in "${wanted[@]}"; do { $list_only || ! installed "$pkg"; } && perf_packages+=("$pkg"); done
fi

if $list_only; then
    printf '%s\n' "${required[@]}" "${perf_packages[@]}" "${slides_packages[@]}"
    exit 0
fi

missing=()
for pkg in "${required[@]}"; do installed "$pkg" || missing+=("$pkg"); done
[ ${#missing[@]} -eq 0 ] && [ ${#perf_packages[@]} -eq 0 ] && [ ${#slides_packages[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    echo "setup: these system packages are missing: ${missing[*]} ${perf_packages[*]} ${slides_packages[*]}"
    echo "       Install them once with:"
    if [ -n "${OFFLINE_CACHE:-}" ]; then
        echo "           sudo OFFLINE_CACHE=$OFFLINE_CACHE $0 $*"
    else
        echo "           sudo apt-get update && sudo apt-get install -y ${missing[*]} ${perf_packages[*]} ${slides_packages[*]}"
    fi
    echo "       then run make again."
    [ ${#missing[@]} -eq 0 ] && exit 0   # only optional packages are missing: go on without them
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt=(apt-get)
if [ -n "${OFFLINE_CACHE:-}" ]; then
    # The cache's apt/ folder is a flat repository (its Packages index written when it was filled).
    # apt reads a sources list of that one folder: it resolves dependencies as usual, installs only
    # what is missing, and never asks the network. The list is written here because the cache may be
    # mounted anywhere.
    cache=$(cd "$OFFLINE_CACHE" && pwd)
    if [ ! -f "$cache/apt/Packages" ]; then
        echo "setup: OFFLINE_CACHE=$OFFLINE_CACHE has no apt/Packages: fill it with tools/offline-cache.sh (with its apt part)"
        exit 1
    fi
    sources=$(mktemp)
    trap 'rm -f "$sources"' EXIT
    echo "deb [trusted=yes] file:$cache/apt ./" > "$sources"
    chmod 644 "$sources"
    apt+=(-o "Dir::Etc::SourceList=$sources" -o "Dir::Etc::SourceParts=-" -o "APT::Get::List-Cleanup=0")
    echo "setup: installing from the offline cache $cache/apt (no network)"
fi
echo "setup: installing system packages: ${missing[*]} ${perf_packages[*]} ${slides_packages[*]}"
"${sudo[@]}" "${apt[@]}" update -qq
if [ ${#missing[@]} -gt 0 ]; then
    "${sudo[@]}" "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#perf_packages[@]} -gt 0 ]; then
    "${sudo[@]}" "${apt[@]}" install -y -qq --no-install-recommends "${perf_packages[@]}" >/dev/null 2>&1 ||
        echo "setup: perf could not be installed here (${perf_packages[*]}); the perf parts will say so and skip."
fi
if [ ${#slides_packages[@]} -gt 0 ]; then
    "${sudo[@]}" "${apt[@]}" install -y -qq --no-install-recommends "${slides_packages[@]}" >/dev/null 2>&1 ||
        echo "setup: ${slides_packages[*]} could not be installed here; make slides builds the HTML without a PDF."
fi
