# The package tests of ctest (tests/cpp/CMakeLists.txt): the consumer project
# (consumer/) configured, built and run against TorchPluginNaca as a user gets it.
#
#   MODE=installed   `cmake --install` of this build into WORK_DIR/prefix, then the
#                    consumer with CMAKE_PREFIX_PATH=WORK_DIR/prefix: a header missing
#                    from the install or a wrong export fails here.
#   MODE=pip         the consumer with CMAKE_PREFIX_PATH=torch_plugin.cmake_prefix_path
#                    (the Python package of SOURCE_DIR); it must load the package's own
#                    libnaca (torch_plugin.library_path). Skipped when torch_plugin does
#                    not import.
#   MODE=subdirectory  the consumer with add_subdirectory(SOURCE_DIR): configure only
#                    (building would compile the library a second time).
#   MODE=torch_mismatch  the installed package found with a stand-in Torch config of another
#                    minor version: the configure must stop, naming both versions.
#   MODE=example     the examples/cpp project built against an installed prefix (a copy of
#                    this build's files, no second library build), and train_fashion_mnist
#                    run for 1 epoch on 2000 samples: both rules must beat chance by far.
#                    Skipped when the Fashion-MNIST folder (DATA_DIR) is absent.
#
# Inputs (-D): MODE, SOURCE_DIR, BUILD_DIR, WORK_DIR, Torch_DIR, GENERATOR, and when set
# CUDA_TOOLKIT_ROOT_DIR, CUDA_nvrtc_LIBRARY, PYTHON, DATA_DIR (MODE=example; default
# /usr/share/datasets/fashion-mnist).
cmake_minimum_required(VERSION 3.19)

foreach(var MODE SOURCE_DIR BUILD_DIR WORK_DIR Torch_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "package_test.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "package test (${MODE}): failed (${rc}): ${cmd}")
  endif()
endfunction()

# The consumer is configured as a user's project is: the package, torch, and for a CUDA
# build of torch the toolkit this build used (torch's own config needs it).
set(consumer_args -DTorch_DIR=${Torch_DIR} -DCMAKE_BUILD_TYPE=Release)
foreach(var CUDA_TOOLKIT_ROOT_DIR CUDA_nvrtc_LIBRARY)
  if(${var})
    list(APPEND consumer_args -D${var}=${${var}})
  endif()
endforeach()

set(consumer_build ${WORK_DIR}/consumer-${MODE})
if(MODE STREQUAL "installed")
  file(REMOVE_RECURSE ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix --component naca)
  set(prefix ${WORK_DIR}/prefix)
  file(GLOB expected_lib ${prefix}/lib*/libnaca.*)
elseif(MODE STREQUAL "pip")
  if(NOT PYTHON)
    message("SKIPPED: no Python interpreter")
    return()
  endif()
  execute_process(
    COMMAND ${PYTHON} -c "import torch_plugin; print(torch_plugin.cmake_prefix_path); print(torch_plugin.library_path)"
    WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message("SKIPPED: torch_plugin does not import from ${SOURCE_DIR} (run the set-up first):\n${err}")
    return()
  endif()
  string(REPLACE "\n" ";" out "${out}")
  list(GET out 0 prefix)
  list(GET out 1 expected_lib)
elseif(MODE STREQUAL "torch_mismatch")
  set(prefix ${WORK_DIR}/prefix-mismatch)
  file(REMOVE_RECURSE ${prefix} ${consumer_build})
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component naca)
  set(fake ${WORK_DIR}/fake-torch)
  file(WRITE ${fake}/TorchConfigVersion.cmake "set(PACKAGE_VERSION 1.0.99)\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n")
  file(WRITE ${fake}/TorchConfig.cmake "add_library(torch INTERFACE IMPORTED)\nset(Torch_FOUND TRUE)\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cpp/consumer -B ${consumer_build}
                          -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DTorch_DIR=${fake}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(REGEX REPLACE "[ \n]+" " " err_flat "${err}")  # CMake wraps the message's lines
  if(rc EQUAL 0 OR NOT err_flat MATCHES "was built against torch [0-9]+\\.[0-9]+, but this project found torch 1\\.0\\.99")
    message(FATAL_ERROR "package test (torch_mismatch): expected a clear error, got rc=${rc}:\n${err}")
  endif()
  message("package test (torch_mismatch): ok, the configure stopped:\n${err}")
  return()
elseif(MODE STREQUAL "example")
  if(NOT DATA_DIR)
    set(DATA_DIR /usr/share/datasets/fashion-mnist)
  endif()
  if(NOT EXISTS ${DATA_DIR}/train-images-idx3-ubyte.gz AND NOT EXISTS ${DATA_DIR}/train-images-idx3-ubyte)
    message("SKIPPED: no Fashion-MNIST in ${DATA_DIR} (apt-get install dataset-fashion-mnist)")
    return()
  endif()
  set(prefix ${WORK_DIR}/prefix-example)
  set(example_build ${WORK_DIR}/examples)
  file(REMOVE_RECURSE ${prefix})
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component naca)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/cpp -B ${example_build} -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${prefix} ${consumer_args})
  run(${CMAKE_COMMAND} --build ${example_build})
  file(REMOVE ${example_build}/model.pt)
  execute_process(
    COMMAND ${example_build}/train_fashion_mnist --data ${DATA_DIR} --epochs 1 --train-subset 2000
            --out ${example_build}/model.pt
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package test (example): train_fashion_mnist failed (${rc})")
  endif()
  # Chance is 0.1; one epoch on 2000 samples reaches about 0.55 (NACA) and 0.7 (BP).
  foreach(rule NACA BP)
    if(NOT out MATCHES "\n${rule}: test accuracy ([0-9.]+), ([0-9.]+) s/epoch")
      message(FATAL_ERROR "package test (example): no '${rule}: test accuracy ...' line in the output")
    endif()
    if(NOT CMAKE_MATCH_1 GREATER 0.3)
      message(FATAL_ERROR "package test (example): ${rule} test accuracy ${CMAKE_MATCH_1}, expected > 0.3")
    endif()
  endforeach()
  if(NOT EXISTS ${example_build}/model.pt)
    message(FATAL_ERROR "package test (example): train_fashion_mnist wrote no model to ${example_build}/model.pt")
  endif()
  message("package test (example): ok")
  return()
elseif(MODE STREQUAL "subdirectory")
  file(REMOVE_RECURSE ${consumer_build})
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cpp/consumer -B ${consumer_build} -G ${GENERATOR}
      -DNACA_SOURCE_DIR=${SOURCE_DIR} -DNACA_BUILD_TESTS=OFF ${consumer_args})
  message("package test (subdirectory): configured")
  return()
else()
  message(FATAL_ERROR "package_test.cmake: MODE=${MODE}: expected installed, pip, subdirectory, torch_mismatch or example")
endif()

message("package test (${MODE}): CMAKE_PREFIX_PATH=${prefix}")
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cpp/consumer -B ${consumer_build} -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} ${consumer_args})
run(${CMAKE_COMMAND} --build ${consumer_build})
run(${consumer_build}/dispatcher_only)
# docs/cpp.md's program: it trains one step and saves the model into its working directory.
file(REMOVE ${consumer_build}/model.pt)
execute_process(COMMAND ${consumer_build}/api_program WORKING_DIRECTORY ${consumer_build} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT EXISTS ${consumer_build}/model.pt)
  message(FATAL_ERROR "package test (${MODE}): api_program failed (${rc}) or wrote no model.pt")
endif()
execute_process(COMMAND ${consumer_build}/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "package test (${MODE}): the consumer failed (${rc})")
endif()
# The program runs the package's own compiled code.
if(CMAKE_HOST_SYSTEM_NAME STREQUAL "Linux")
  string(REGEX MATCH "libnaca: [^\n]*" loaded "${out}")
  string(REPLACE "libnaca: " "" loaded "${loaded}")
  if(NOT loaded)
    message(FATAL_ERROR "package test (${MODE}): the consumer did not report where libnaca was loaded from")
  endif()
  file(REAL_PATH "${loaded}" loaded)
  file(REAL_PATH "${expected_lib}" expected_lib)
  if(NOT loaded STREQUAL expected_lib)
    message(FATAL_ERROR "package test (${MODE}): the consumer loaded '${loaded}', expected '${expected_lib}'")
  endif()
endif()
message("package test (${MODE}): ok")
