# SPDX-License-Identifier: Apache-2.0
#
# Build-time step of the root CMakeLists.txt (run with `cmake -P`): builds
# the tfmprov-firmware staticlib with cargo for the board's Rust target.
#
# Inputs (-D): PARAMS (generated: TF-M NS include dir, tfm_api include dirs
# and defines, probe object), CARGO, RUSTC (may be empty), BUILD_STD (ON/OFF),
# WORKSPACE, RUST_TARGET, TARGET_DIR, EMPTY_LIB_DIR, CC, AR, NM, CPU_FLAGS
# ('|'-separated), OUT_LIB, TFM_CONFIG_HEADER (the board's TF-M project
# configuration header: rust/psa/build.rs derives the storage limits from it),
# FEATURES (empty, or `partition` with CONFIG_TFMPROV_PARTITION).
cmake_minimum_required(VERSION 3.20)

include(${PARAMS})

# 1. sizeof(psa_key_attributes_t) in C: the size of the probe's one symbol.
execute_process(
  COMMAND ${NM} -S ${TFMPROV_PROBE_OBJECTS}
  OUTPUT_VARIABLE nm_out
  COMMAND_ERROR_IS_FATAL ANY
)
string(REGEX MATCH "[0-9a-fA-F]+ ([0-9a-fA-F]+) [A-Za-z] tfmprov_psa_attr_probe" _ "${nm_out}")
if(NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "tfmprov: no tfmprov_psa_attr_probe symbol in ${TFMPROV_PROBE_OBJECTS}:\n${nm_out}")
endif()
math(EXPR c_sizeof "0x${CMAKE_MATCH_1}" OUTPUT_FORMAT DECIMAL)
message(STATUS "tfmprov: C sizeof(psa_key_attributes_t) = ${c_sizeof}")

# 2. Compiler arguments for psa-crypto-sys: bindgen (libclang) parses TF-M's
#    psa/crypto.h, cc compiles its shim.c. Both get the same include dirs,
#    defines and -fshort-enums as the C side (arm-none-eabi GCC's default).
string(REPLACE "|" ";" cpu_flags "${CPU_FLAGS}")
# The C compiler's own system include directories (its C library headers):
# libclang has none for arm-none targets.
execute_process(
  COMMAND ${CC} ${cpu_flags} -xc -E -Wp,-v ${CMAKE_CURRENT_LIST_DIR}/empty.c
  OUTPUT_QUIET ERROR_VARIABLE cc_verbose
)
string(REGEX MATCH "search starts here:\n(.*)End of search list" _ "${cc_verbose}")
string(REGEX REPLACE "\n" ";" cc_system_dirs "${CMAKE_MATCH_1}")

set(bindgen_args "'-fshort-enums'")
# cc-rs adds the target's -march/-mthumb/-mfloat-abi itself (an extra -mcpu
# would conflict with its -march under shim.c's -Werror); the struct layout
# does not depend on the CPU, only on the ABI, headers, defines and enum size.
set(c_flags "-fshort-enums")
set(include_dirs ${TFMPROV_TFM_NS_INCLUDE} ${TFMPROV_C_INCLUDES})
list(REMOVE_DUPLICATES include_dirs)
foreach(dir IN LISTS include_dirs)
  string(APPEND bindgen_args " '-I${dir}'")
  string(APPEND c_flags " -I${dir}")
endforeach()
foreach(dir IN LISTS cc_system_dirs)
  string(STRIP "${dir}" dir)
  if(dir)
    string(APPEND bindgen_args " '-isystem${dir}'")
  endif()
endforeach()
foreach(def IN LISTS TFMPROV_C_DEFINES)
  # bindgen splits its variable like a shell: single quotes keep the double
  # quotes of e.g. MBEDTLS_CONFIG_FILE="..."; cc-rs splits CFLAGS on spaces.
  string(APPEND bindgen_args " '-D${def}'")
  string(APPEND c_flags " -D${def}")
endforeach()

# Per-target variable names use the triple as is (bindgen and cc-rs look
# for <VAR>_<target>), so host build scripts are not affected.
set(target_env "${RUST_TARGET}")

set(env
  "MBEDTLS_INCLUDE_DIR=${TFMPROV_TFM_NS_INCLUDE}"
  "TFMPROV_TFM_NS_INCLUDE=${TFMPROV_TFM_NS_INCLUDE}"
  "MBEDTLS_LIB_DIR=${EMPTY_LIB_DIR}"
  "BINDGEN_EXTRA_CLANG_ARGS_${target_env}=${bindgen_args}"
  "CC_${target_env}=${CC}"
  "AR_${target_env}=${AR}"
  "CFLAGS_${target_env}=${c_flags}"
  "CARGO_TARGET_DIR=${TARGET_DIR}"
  "TFMPROV_C_SIZEOF_PSA_KEY_ATTRIBUTES=${c_sizeof}"
  "TFMPROV_TFM_CONFIG_HEADER=${TFM_CONFIG_HEADER}"
)
if(RUSTC)
  list(APPEND env "RUSTC=${RUSTC}")
endif()

# `cargo rustc --crate-type staticlib`: the package also declares an rlib (for
# its host tests), and with both crate types rustc does no cross-crate LTO;
# with the staticlib alone the `firmware` profile's LTO applies
# (scripts/cross-build builds and checks both forms).
set(cargo_args rustc -p tfmprov-firmware --profile firmware --target ${RUST_TARGET})
if(BUILD_STD)
  # core + alloc from the toolchain's library source; RUSTC_BOOTSTRAP lets a
  # stable rustc accept the -Z flag.
  list(APPEND env "RUSTC_BOOTSTRAP=1")
  list(APPEND cargo_args -Zbuild-std=core,alloc)
endif()
if(FEATURES)
  # `partition` (CONFIG_TFMPROV_PARTITION): the partition's client, whose
  # bindings bindgen makes from psa/client.h and psa_manifest/sid.h in
  # TFMPROV_TFM_NS_INCLUDE (rust/partition-client/build.rs).
  list(APPEND cargo_args --no-default-features --features ${FEATURES})
endif()
list(APPEND cargo_args --crate-type staticlib)

message(STATUS "tfmprov: ${CARGO} ${cargo_args}")
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env ${env} ${CARGO} ${cargo_args}
  WORKING_DIRECTORY ${WORKSPACE}
  COMMAND_ERROR_IS_FATAL ANY
)

if(NOT EXISTS ${OUT_LIB})
  message(FATAL_ERROR "tfmprov: cargo finished but ${OUT_LIB} is missing")
endif()
# cargo leaves the archive alone when nothing changed; touch it so that the
# build tool sees this output as up to date with its inputs.
file(TOUCH_NOCREATE ${OUT_LIB})
