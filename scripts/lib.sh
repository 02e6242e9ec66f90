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
# The kernel bases the project carries a series for: mainline (7.3, the
# series in patches/) and the 6.12 stable backport (patches/6.12/).  BASE
# picks one (default BASE_DEFAULT); KSRC, when given, picks the base by its
# version instead, and a BASE that disagrees with it is an error.
BASES="7.3 6.12"
BASE_DEFAULT=7.3

die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# The base a kernel version belongs to (7.3.4 -> 7.3), or nothing.
version_base() {
	local b
	for b in $BASES; do
		case "$1" in
		"$b"|"$b".*|"$b"-*|"$b"+*) echo "$b"; return 0 ;;
		esac
	done
	return 0
}

base_check() {
	case " $BASES " in
	*" $1 "*) ;;
	*) die "BASE=$1: the series exists for ${BASES// / and } only" ;;
	esac
}

# Debian's source package of a base.
base_ksrc() {
	echo "/usr/src/linux-source-$1.tar.xz"
}

# Where a base's series lives.
base_series_dir() {
	if [ "$1" = "$BASE_DEFAULT" ]; then
		echo "$FUSE_ADIO_TOP/patches"
	else
		echo "$FUSE_ADIO_TOP/patches/$1"
	fi
}

# KSRC from what the user gave: KSRC itself, or BASE's source package, or
# the default base's.  BASE stays set (and exported) only if the user set
# it; ksrc_prepare() then insists that KSRC is of that base.
resolve_base() {
	[ -z "${BASE:-}" ] || base_check "$BASE"
	[ -n "${KSRC:-}" ] || KSRC=$(base_ksrc "${BASE:-$BASE_DEFAULT}")
	export KSRC
	[ -z "${BASE:-}" ] || export BASE
}


note() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# usage: print the calling script's header comment (from line 2 to the
# first line that is not a comment), for --help.
usage() {
	sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

# Print the kernel version (e.g. 6.12.117) of a source or build tree.
tree_version() {
	make -s -C "$1" kernelversion 2>/dev/null | tail -n 1
}

# Unpack a kernel source tarball once into the cache, or accept a source
# tree; print the directory.  Refuse a version with no series, and one that
# is not of BASE when BASE is set.
ksrc_prepare() {
	local ksrc=${1:-$KSRC} dir sha stamp ver base lock=

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
			echo "$sha" >"$stamp.$$" && mv "$stamp.$$" "$stamp"
		fi
		dir="$FUSE_ADIO_CACHE/src/$(basename "${ksrc%%.tar*}")-$sha"
		if [ ! -f "$dir/.unpacked" ]; then
			# one unpacker: make check's foreground and background
			# jobs may prepare the same source at once
			exec {lock}>"$dir.lock"
			flock "$lock" || die "cannot lock $dir.lock"
		fi
		if [ ! -f "$dir/.unpacked" ]; then
			note "unpacking $ksrc into $dir (once)"
			rm -rf "$dir" "$dir.tmp"
			mkdir -p "$dir.tmp"
			tar -xf "$ksrc" -C "$dir.tmp" --strip-components=1 ||
				die "cannot unpack KSRC=$ksrc"
			mv "$dir.tmp" "$dir"
			touch "$dir/.unpacked"
		fi
		[ -z "${lock:-}" ] || exec {lock}>&-
	else
		base=${BASE:-$BASE_DEFAULT}
		if [ "$ksrc" = "$(base_ksrc "$base")" ]; then
			die "KSRC=$ksrc does not exist: run scripts/install-deps (apt-get install linux-source-$base), or pass KSRC=<source tree or tarball>"
		fi
		die "KSRC=$ksrc does not exist: pass KSRC=<a ${BASES// / or } source tree or tarball>"
	fi
	ver=$(tree_version "$dir")
	base=$(version_base "$ver")
	[ -n "$base" ] ||
		die "KSRC=$ksrc is Linux ${ver:-of unknown version}: the series exists for ${BASES// / and } only (BASE=...)"
	[ -z "${BASE:-}" ] || [ "$BASE" = "$base" ] ||
		die "KSRC=$ksrc is Linux $ver, but BASE=$BASE: drop one of them or make them agree"
	echo "$dir"
}

# The base of a prepared source tree.
ksrc_base() {
	version_base "$(tree_version "$1")"
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

# The config fragments of a flavour for source tree $2, one path a line:
# base.config, base-<base>.config if there is one, <flavour>.config.
kernel_fragments() {
	local b
	b=$(ksrc_base "$2")
	echo "$FUSE_ADIO_TOP/configs/base.config"
	[ ! -f "$FUSE_ADIO_TOP/configs/base-$b.config" ] ||
		echo "$FUSE_ADIO_TOP/configs/base-$b.config"
	echo "$FUSE_ADIO_TOP/configs/$1.config"
}

# Cache directory of a test kernel flavour built from source $2.  The key
# covers the source, the config fragments, the build recipe version (bump
# KERNEL_RECIPE in build-kernel when the way of building changes) and the
# compiler.
kernel_build_dir() {
	local flavour=$1 srcdir=$2 key
	[ -f "$FUSE_ADIO_TOP/configs/$flavour.config" ] ||
		die "unknown test kernel '$flavour': choose one of $(cd "$FUSE_ADIO_TOP/configs" && ls ./*.config | sed 's,^\./,,; s,\.config$,,' | grep -v '^base' | tr '\n' ' ')"
	key=$( {
		ksrc_identity "$srcdir"
		kernel_fragments "$flavour" "$srcdir" | xargs cat
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

# The patches of a base's series file in order, as absolute paths, one a
# line (base: the base of source tree $1).
series_patches() {
	local base dir name
	base=$(ksrc_base "$1")
	dir=$(base_series_dir "$base")
	[ -f "$dir/series" ] ||
		die "no series for Linux $base: ${dir#"$FUSE_ADIO_TOP"/}/series is missing"
	while read -r name _; do
		case "$name" in ''|'#'*) continue ;; esac
		[ -f "$dir/$name" ] ||
			die "${dir#"$FUSE_ADIO_TOP"/}/series lists $name, which does not exist there"
		echo "$dir/$name"
	done <"$dir/series"
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

# flavour_module FLAVOUR VARIANT KDIR SRCDIR: print the fuse.ko (patched,
# stock, or upto-N: the first N patches) for the FLAVOUR test kernel in
# KDIR, built from SRCDIR, building it first into
# logs/modules/<base>/FLAVOUR-VARIANT unless it is there and
# still of the same series, source and kernel.  For the kernels make's own
# fs-fuse/ and fs-fuse-stock/ were not built for (the perf flavour, or the
# other base).
flavour_module() {
	local flavour=$1 variant=$2 kdir=$3 srcdir=$4 dir want list stock='' upto=()
	dir="$FUSE_ADIO_TOP/logs/modules/$(ksrc_base "$srcdir")/$flavour-$variant"
	if [ "$variant" = stock ]; then
		want=$(series_id) stock=--stock
	else
		list=$(series_patches "$srcdir") || return 1
		if [[ $variant == upto-* ]]; then	# build-module checks N
			upto=(--upto "${variant#upto-}")
			list=$(head -n "${variant#upto-}" <<<"$list")
		fi
		# shellcheck disable=SC2086
		want=$(series_id $list)
	fi
	if ! { [ -f "$dir/fuse.ko" ] && [ -f "$dir/.staged" ] && [ -f "$dir/.kdir" ] &&
	       [ "$(cat "$dir/.kdir")" = "$kdir" ] &&
	       [ "$(sed -n 's/^series_id=//p' "$dir/.staged")" = "$want" ] &&
	       [ "$(sed -n 's/^source=//p' "$dir/.staged")" = "$srcdir" ] &&
	       [ "$dir/fuse.ko" -nt "$dir/.staged" ]; }; then
		"$FUSE_ADIO_TOP/scripts/build-module" --kdir "$kdir" --ksrc "$srcdir" \
			--out "$dir" $stock "${upto[@]}" >&2 ||
			die "building the $variant fuse.ko for the $flavour kernel failed"
	fi
	echo "$dir/fuse.ko"
}
