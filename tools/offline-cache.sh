#!/usr/bin/env bash
# Fill a folder with everything the workshop's set-up downloads, for a hall with bad Wi-Fi.
#
#   tools/offline-cache.sh DIR                 pip wheels, npm packages and apt .debs
#   tools/offline-cache.sh DIR pip npm         only some parts (any of: pip npm apt)
#   SLIDES=0 tools/offline-cache.sh DIR apt    the .debs without Node.js, npm and Chromium
#
# Run it on a connected machine like the venue's (same distribution release, same architecture,
# same Python minor version: the wheels are built for this Python). Then, on each machine, with the
# folder copied or mounted and no network:
#
#   make setup OFFLINE_CACHE=DIR       apt from DIR/apt, pip from DIR/pip (--no-index)
#   make slides OFFLINE_CACHE=DIR      npm ci --offline from DIR/npm (make handout too)
#
# What goes where (docs/instructors/preflight.md tells the whole procedure):
#   DIR/pip   a wheel for every line of requirements.txt (pip wheel: packages published only as
#             sources are built here, once), checked with pip install --dry-run --no-index
#   DIR/npm   npm's cache after an npm ci of slides/package-lock.json, checked by a second
#             npm ci --offline into a scratch folder
#   DIR/apt   the .debs of tools/setup-system.sh --list slides and their dependencies, with a
#             Packages index: a flat repository that setup-system.sh hands to apt
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(pip npm apt)
for part in "${parts[@]}"; do
    case "$part" in pip|npm|apt) ;; *) echo "offline-cache: unknown part '$part' (pip, npm or apt)"; exit 2 ;; esac
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

fill_pip() {
    local python=${PYTHON:-python3}
    echo "offline-cache: pip wheels for $("$python" --version) into $dir/pip"
    # A scratch venv: its pip is the one make setup will use, and nothing is installed system-wide.
    "$python" -m venv "$scratch/venv"
    local pip=("$scratch/venv/bin/python" -m pip --disable-pip-version-check)
    mkdir -p "$dir/pip"
    "${pip[@]}" wheel --quiet --wheel-dir "$dir/pip" -r requirements.txt
    # The proof that it is complete: a resolution from the cache alone (no index, no other folder).
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
        "${pip[@]}" install --quiet --dry-run --no-index --find-links "$dir/pip" -r requirements.txt
    echo "offline-cache: pip: $(ls "$dir/pip" | wc -l) wheels; pip install --no-index resolves requirements.txt from them"
}

fill_npm() {
    command -v npm >/dev/null || { echo "offline-cache: npm is not installed here (tools/setup-system.sh slides)"; exit 1; }
    echo "offline-cache: npm packages of slides/package-lock.json into $dir/npm"
    mkdir -p "$scratch/fill" "$scratch/check" "$dir/npm"
    cp slides/package.json slides/package-lock.json "$scratch/fill/"
    cp slides/package.json slides/package-lock.json "$scratch/check/"
    (cd "$scratch/fill" && npm_config_offline=false npm ci --cache "$dir/npm" --no-audit --no-fund --prefer-online >/dev/null)
    # The proof that it is complete: the same install again, refused any network access by npm.
    (cd "$scratch/check" && npm ci --cache "$dir/npm" --offline --no-audit --no-fund >/dev/null)
    echo "offline-cache: npm: npm ci --offline installed the lock's $(grep -c '"node_modules/' slides/package-lock.json) packages from the cache alone"
}

fill_apt() {
    command -v apt-get >/dev/null || { echo "offline-cache: no apt here: fill the apt part on a Debian or Ubuntu machine"; exit 1; }
    local wanted
    if [ "${SLIDES:-1}" = 0 ]; then wanted=$(tools/setup-system.sh --list); else wanted=$(tools/setup-system.sh --list slides); fi
    echo "offline-cache: .debs of $(echo $wanted) and their dependencies into $dir/apt"
    # Every package of the dependency closure, installed here or not: a venue machine may lack any
    # of them. Virtual packages (<name>) have no .deb of their own: what provides them is listed too.
    local closure
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $wanted | grep '^[a-z0-9]' | sort -u)
    mkdir -p "$dir/apt"
    (cd "$dir/apt" && apt-get download $closure >/dev/null)
    if command -v apt-ftparchive >/dev/null; then
        (cd "$dir/apt" && apt-ftparchive packages . > Packages)
    elif command -v dpkg-scanpackages >/dev/null; then
        (cd "$dir/apt" && dpkg-scanpackages --multiversion . > Packages 2>/dev/null)
    else
        echo "offline-cache: apt-ftparchive (apt-utils) or dpkg-scanpackages (dpkg-dev) is needed for the index"
        exit 1
    fi
    echo "offline-cache: apt: $(ls "$dir/apt"/*.deb | wc -l) .debs, $(du -sh "$dir/apt" | cut -f1), indexed in $dir/apt/Packages"
}

for part in "${parts[@]}"; do "fill_$part"; done
{
    echo "The asyncfs workshop's offline cache, filled by tools/offline-cache.sh on $(date -u +%Y-%m-%d)"
    echo "from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), on $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}") $(uname -m)."
    echo "Parts: $(ls -d "$dir"/{pip,npm,apt} 2>/dev/null | xargs -n1 basename | tr '\n' ' ')"
    echo "Use: make setup OFFLINE_CACHE=THIS_FOLDER (and make slides / make handout OFFLINE_CACHE=THIS_FOLDER)."
} > "$dir/README.txt"
echo "offline-cache: done ($(du -sh "$dir" | cut -f1) in $dir). Use it with: make setup OFFLINE_CACHE=$dir"
