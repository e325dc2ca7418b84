/* Empty translation unit: cargo_build.cmake asks the C compiler for its include dirs with it. */
