#!/usr/bin/env bash
# Prints the directory holding the previous release's binaries (sanyu,
# sanyu-gateway, sanyu-rules, sanyu-notifier, sanyu-scheduler) for
# tests/e2e/upgrade.rs, building them first if they are not cached yet.
# The release is the commit named in deploy/previous-release; its source comes
# from this clone's history (`git archive`), so a shallow clone cannot build it
# (`git fetch --unshallow`). Exits 1 when it cannot be built.
#
# The build shares the caller's target directory, so the dependencies both
# versions have in common compile once. The old workspace's own crates live
# in another directory and get their own artifacts, but cargo copies the old
# binaries over `<target>/debug/sanyu-*`: they are moved out to the cache
# here, and the next `cargo build` of the current workspace links its own
# again (scripts/test.sh builds right after this).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
commit="$(grep -v '^#' deploy/previous-release | awk 'NF { print $1; exit }')"
target="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target/previous-release/$commit"
bins=(sanyu sanyu-gateway sanyu-rules sanyu-notifier sanyu-scheduler)

cached=true
for b in "${bins[@]}"; do
    [ -x "$out/bin/$b" ] || cached=false
done
if $cached; then
    echo "$out/bin"
    exit 0
fi

if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "ensure-previous-release: commit $commit is not in this clone's history (shallow clone? git fetch --unshallow)" >&2
    exit 1
fi
src="$out/src"
rm -rf "$src" "$out/bin"
mkdir -p "$src" "$out/bin"
# `-m`: the files get the time of extraction, not the commit's. The old tree's
# packages have the same paths relative to the workspace as the current one's,
# so cargo shares their build-script runs: with the commit's (older) times the
# proto build script would not run again, and the old code would compile
# against the current tree's generated types. (The current tree then builds
# afresh: the old tree's files, named in the dep-info, are removed below.)
git archive "$commit" | tar -x -m -C "$src"
packages=()
for p in sanyu-cli sanyu-gateway sanyu-rules sanyu-notifier sanyu-scheduler; do
    packages+=(-p "$p")
done
echo "ensure-previous-release: building ${commit:0:12} (once; cached in $out)" >&2
(cd "$src" && CARGO_TARGET_DIR="$target" cargo build --locked --bins "${packages[@]}") >&2
for b in "${bins[@]}"; do
    mv "$target/debug/$b" "$out/bin/$b"
done
rm -rf "$src"
echo "$out/bin"
