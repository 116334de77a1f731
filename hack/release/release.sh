#!/usr/bin/env bash
# Build the release tarballs (make release VERSION=v1.2.3): one per
# architecture ParallelCluster runs (linux/amd64, linux/arm64 for Graviton),
# each holding the static spotrescue binary with the version stamped in,
# deploy/ (what the installer, the Slurm hooks and the stack need) and the
# README and LICENSE, plus SHA256SUMS over the tarballs. Reproducible: the
# same commit and Go version give the same bytes (-trimpath, no build id,
# sorted entries, fixed owners, the commit's time as every mtime, gzip -n).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
version=${VERSION:?set VERSION, e.g. make release VERSION=v1.2.3}
[[ $version =~ ^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$ ]] || { echo "release: VERSION \"$version\" is not a version" >&2; exit 1; }
out=${OUT:-bin/release}
mkdir -p "$out"
out=$(cd "$out" && pwd)
epoch=$(git log -1 --format=%ct)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

files=()
while IFS= read -r f; do files+=("$f"); done < <(git ls-files deploy | grep -v -e '_test\.go$' -e '\.go$')
for arch in amd64 arm64; do
	name=spotrescue-$version-linux-$arch
	dir=$stage/$name
	mkdir -p "$dir"
	echo "release: building $name" >&2
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -buildid= -X main.version=$version" -o "$dir/spotrescue" ./controller/cmd/spotrescue
	for f in "${files[@]}" README.md LICENSE; do
		mkdir -p "$dir/$(dirname "$f")"
		cp "$f" "$dir/$f"
	done
	tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=go-w,a+rX \
		-C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
done
(cd "$out" && sha256sum "spotrescue-$version-linux-amd64.tar.gz" "spotrescue-$version-linux-arm64.tar.gz" >SHA256SUMS)
echo "release: $(cat "$out/SHA256SUMS" | wc -l) tarballs and SHA256SUMS in $out" >&2
