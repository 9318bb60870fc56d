# sluice: the two commands a new user needs.
#   make run    install missing Debian packages, build, run sluiced in the
#               foreground on the embedded default (127.0.0.1:2525, ./var/)
#   make test   install, build (plain, ASan+UBSan, libFuzzer) and run every
#               test; ends with "N passed, N failed[, N skipped]"
# Other targets: build, deps, asan, fuzz, clean, compare (bench/compare,
# sluice vs a private Postfix; needs root; COMPARE_ARGS="--quick" etc.).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30

# Debian packages the build and the tests need.
DEBS = meson ninja-build pkg-config gcc clang libclang-rt-14-dev \
       libjemalloc-dev liburcu-dev libconfig-dev libcmocka-dev \
       libc-ares-dev python3 swaks postfix iproute2 gnuplot-nox \
       unbound dovecot-lmtpd dovecot-imapd

.PHONY: all run test deps build asan fuzz clean compare

all: build

deps:
	@tests/install_deps.sh $(DEBS)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	./$(BUILD)/sluiced

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Dtests=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false

fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

test: build asan fuzz
	@tests/run_all.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The side-by-side benchmark (bench/README.md): builds, then runs sluice and
# a private Postfix through every scenario; the report lands in
# ./bench-report/<date>/ (or --out in COMPARE_ARGS).
COMPARE_ARGS ?=
compare: build
	bench/compare --build $(BUILD) $(COMPARE_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
