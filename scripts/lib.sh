# shellcheck shell=bash
# Shared helpers for the fuse-adio scripts: error reporting, the artefact
# cache, kernel source preparation and test-kernel lookup.
#
# Cache layout (outside the work tree, survives `git clean`):
#   $FUSE_ADIO_CACHE/src/<name>-<sha12>/     unpacked kernel source tarballs
#   $FUSE_ADIO_CACHE/hdr/<key>/usr/include   uapi headers for userspace
#   $FUSE_ADIO_CACHE/kernels/<flavour>-<version>-<key>/   test kernel builds

FUSE_ADIO_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUSE_ADIO_CACHE=${FUSE_ADIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fuse-adio}
KSRC_DEFAULT=/usr/src/linux-source-6.12.tar.xz

die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

note() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# Print the kernel version (e.g. 6.12.117) of a source or build tree.
tree_version() {
	make -s -C "$1" kernelversion 2>/dev/null | tail -n 1
}

# Unpack a kernel source tarball once into the cache, or accept a source
# tree; print the directory.  Refuse anything that is not Linux 6.12.
ksrc_prepare() {
	local ksrc=${1:-$KSRC_DEFAULT} dir sha stamp ver

	if [ -d "$ksrc" ]; then
		[ -f "$ksrc/Makefile" ] && [ -d "$ksrc/fs/fuse" ] ||
			die "KSRC=$ksrc is not a kernel source tree (no Makefile or fs/fuse)"
		dir=$(cd "$ksrc" && pwd)
	elif [ -f "$ksrc" ]; then
		# Key the unpacked tree by content; remember the hash per
		# size+mtime so that it is computed once.
		stamp="$FUSE_ADIO_CACHE/src/.sha-$(stat -c '%s-%Y' "$ksrc")-$(basename "$ksrc")"
		if [ -f "$stamp" ]; then
			sha=$(cat "$stamp")
		else
			mkdir -p "$FUSE_ADIO_CACHE/src"
			sha=$(sha256sum "$ksrc" | cut -c1-12)
			echo "$sha" >"$stamp"
		fi
		dir="$FUSE_ADIO_CACHE/src/$(basename "${ksrc%%.tar*}")-$sha"
		if [ ! -f "$dir/.unpacked" ]; then
			note "unpacking $ksrc into $dir (once)"
			rm -rf "$dir" "$dir.tmp"
			mkdir -p "$dir.tmp"
			tar -xf "$ksrc" -C "$dir.tmp" --strip-components=1 ||
				die "cannot unpack KSRC=$ksrc"
			mv "$dir.tmp" "$dir"
			touch "$dir/.unpacked"
		fi
	elif [ "$ksrc" = "$KSRC_DEFAULT" ]; then
		die "KSRC=$ksrc does not exist: apt-get install linux-source-6.12, or pass KSRC=<6.12 source tree or tarball>"
	else
		die "KSRC=$ksrc does not exist: pass KSRC=<6.12 source tree or tarball>"
	fi
	ver=$(tree_version "$dir")
	case "$ver" in
	6.12|6.12.*) ;;
	*) die "KSRC=$ksrc is Linux ${ver:-of unknown version}, not 6.12: pass a 6.12 source (e.g. KSRC=$KSRC_DEFAULT)" ;;
	esac
	echo "$dir"
}

# Identity of a source tree for cache keys: its version plus, for a git
# checkout, the commit, else its path (tarballs are keyed by content).
ksrc_identity() {
	local dir=$1
	if git -C "$dir" rev-parse --verify -q HEAD >/dev/null 2>&1 &&
	   [ "$(git -C "$dir" rev-parse --show-toplevel)" = "$dir" ]; then
		echo "$(tree_version "$dir") git $(git -C "$dir" rev-parse HEAD)"
	else
		echo "$(tree_version "$dir") $dir"
	fi
}

# Cache directory of a test kernel flavour built from source $2.  The key
# covers the source, the config fragments, the build recipe version (bump
# KERNEL_RECIPE in build-kernel when the way of building changes) and the
# compiler.
kernel_build_dir() {
	local flavour=$1 srcdir=$2 key
	[ -f "$FUSE_ADIO_TOP/configs/$flavour.config" ] ||
		die "unknown test kernel '$flavour': choose one of $(cd "$FUSE_ADIO_TOP/configs" && ls ./*.config | sed 's,^\./,,; s,\.config$,,' | grep -v '^base$' | tr '\n' ' ')"
	key=$( {
		ksrc_identity "$srcdir"
		cat "$FUSE_ADIO_TOP/configs/base.config" "$FUSE_ADIO_TOP/configs/$flavour.config"
		grep "^KERNEL_RECIPE=" "$FUSE_ADIO_TOP/scripts/build-kernel"
		flavour_make_args "$flavour"
		flavour_cc_version "$flavour"
	} | sha256sum | cut -c1-12)
	echo "$FUSE_ADIO_CACHE/kernels/$flavour-$(tree_version "$srcdir")-$key"
}

# Install the uapi headers of source tree $1 once; print the include dir.
uapi_headers() {
	local srcdir=$1 dir
	dir="$FUSE_ADIO_CACHE/hdr/$(basename "$srcdir")"
	if [ ! -f "$dir/.installed" ]; then
		rm -rf "$dir"
		mkdir -p "$dir"
		make -s -C "$srcdir" O="$dir/build" INSTALL_HDR_PATH="$dir/usr" \
			headers_install >"$dir.log" 2>&1 ||
			die "headers_install of $srcdir failed, see $dir.log"
		rm -rf "$dir/build"
		touch "$dir/.installed"
	fi
	echo "$dir/usr/include"
}

# The patches of patches/series in order, as absolute paths, one a line.
series_patches() {
	local name
	[ -f "$FUSE_ADIO_TOP/patches/series" ] || return 0
	while read -r name _; do
		case "$name" in ''|'#'*) continue ;; esac
		[ -f "$FUSE_ADIO_TOP/patches/$name" ] ||
			die "patches/series lists $name, which does not exist in patches/"
		echo "$FUSE_ADIO_TOP/patches/$name"
	done <"$FUSE_ADIO_TOP/patches/series"
}

# Content hash of a list of patch files (none: the stock source).
series_id() {
	cat /dev/null "$@" | sha256sum | cut -c1-12
}

# kbuild arguments that select a flavour's compiler (configs/FLAVOUR.toolchain,
# one 'make' argument a line, e.g. LLVM=-16; gcc when there is none).
flavour_make_args() {
	local f="$FUSE_ADIO_TOP/configs/$1.toolchain"
	[ -f "$f" ] || return 0
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$f"
}

# First line of --version of the compiler a flavour is built with.
flavour_cc_version() {
	local llvm
	llvm=$(flavour_make_args "$1" | sed -n 's/^LLVM=//p')
	case "$llvm" in
	'') gcc --version | head -n 1 ;;
	1) clang --version | head -n 1 ;;
	-*) "clang$llvm" --version | head -n 1 ;;
	*) "${llvm}clang" --version | head -n 1 ;;
	esac
}

# kbuild arguments an out-of-tree module build against build tree $1 needs:
# a kernel built with clang wants its modules built with the same LLVM
# toolchain (LLVM=-N when clang-N is installed, else LLVM=1).
kdir_make_args() {
	local kdir=$1 ver major
	grep -q '^CONFIG_CC_IS_CLANG=y' "$kdir/.config" 2>/dev/null || return 0
	ver=$(sed -n 's/^CONFIG_CLANG_VERSION=//p' "$kdir/.config")
	major=$((ver / 10000))
	if command -v "clang-$major" >/dev/null; then
		echo "LLVM=-$major"
	elif command -v clang >/dev/null; then
		echo "LLVM=1"
	else
		die "KDIR=$kdir was built with clang $major, which is not installed (apt-get install clang-$major lld-$major llvm-$major)"
	fi
}
