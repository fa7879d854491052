# Finds libtorch and makes sure the one linked is the one named.
#
# TorchConfig.cmake looks for its Caffe2 config and libtorch.so in the system
# prefixes before its own tree, so with a system libtorch installed (Debian's
# libtorch-dev) the headers could come from Torch_DIR's tree and the
# libraries from the system. Both are pinned to Torch_DIR's tree here, and
# every torch library the targets link is checked to lie inside it.
#
# Sets: QJOBS_TORCH_VERSION ("2.11.0"), QJOBS_TORCH_CUDA (ON when the libtorch
# has CUDA), QJOBS_TORCH_CUDA_VERSION ("13.0" or ""), QJOBS_TORCH_PREFIX.
if(Torch_DIR AND EXISTS "${Torch_DIR}/TorchConfig.cmake")
  get_filename_component(_qjobs_torch_prefix "${Torch_DIR}/../../.." ABSOLUTE)
  if(EXISTS "${Torch_DIR}/../Caffe2/Caffe2Config.cmake")
    get_filename_component(_qjobs_caffe2 "${Torch_DIR}/../Caffe2" ABSOLUTE)
    set(Caffe2_DIR "${_qjobs_caffe2}" CACHE PATH "Caffe2 config of the libtorch at Torch_DIR" FORCE)
  endif()
  if(EXISTS "${_qjobs_torch_prefix}/lib/libtorch.so")
    set(TORCH_LIBRARY "${_qjobs_torch_prefix}/lib/libtorch.so" CACHE FILEPATH "libtorch of Torch_DIR" FORCE)
  endif()
endif()

# A CUDA libtorch's config compiles a probe with nvcc to find the GPUs of
# this machine unless told which architectures to build for; the build
# machine need not have the GPU (default: Hopper, the H100/H200).
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA architectures for a CUDA libtorch's flags")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_EXTENSIONS OFF)
find_package(Torch REQUIRED)

get_filename_component(QJOBS_TORCH_PREFIX "${TORCH_INSTALL_PREFIX}" REALPATH)
set(_qjobs_torch_libs "${TORCH_LIBRARY}")
foreach(_t torch torch_cpu torch_cuda c10 c10_cuda)
  if(TARGET ${_t})
    foreach(_prop IMPORTED_LOCATION IMPORTED_LOCATION_RELEASE IMPORTED_LOCATION_RELWITHDEBINFO IMPORTED_LOCATION_NOCONFIG)
      get_target_property(_loc ${_t} ${_prop})
      if(_loc)
        list(APPEND _qjobs_torch_libs "${_loc}")
      endif()
    endforeach()
  endif()
endforeach()
if(C10_CUDA_LIBRARY)
  list(APPEND _qjobs_torch_libs "${C10_CUDA_LIBRARY}")
endif()
foreach(_lib IN LISTS _qjobs_torch_libs)
  get_filename_component(_real "${_lib}" REALPATH)
  string(FIND "${_real}" "${QJOBS_TORCH_PREFIX}/" _at)
  if(NOT _at EQUAL 0)
    message(FATAL_ERROR "qjobs: the libtorch at ${QJOBS_TORCH_PREFIX} (Torch_DIR=${Torch_DIR}) would link ${_real}, "
                        "which is outside it (another libtorch, such as Debian's libtorch-dev, was found first). "
                        "Remove the other one or point Torch_DIR at it.")
  endif()
endforeach()

# Only libtorch's own headers. A pip torch's include/ also carries the third
# party headers it was built with (fmt 12, protobuf, pybind11, oneDNN, ...),
# which would shadow the system's that spdlog and ONNX are built against (a
# spdlog of Debian's fmt 9 does not compile against fmt 12). The targets see
# a folder of links to ATen, c10, torch and caffe2 instead.
set(_qjobs_torch_inc "${CMAKE_BINARY_DIR}/torch-include")
file(MAKE_DIRECTORY "${_qjobs_torch_inc}")
foreach(_d ATen c10 torch caffe2)
  if(EXISTS "${QJOBS_TORCH_PREFIX}/include/${_d}" AND NOT EXISTS "${_qjobs_torch_inc}/${_d}")
    file(CREATE_LINK "${QJOBS_TORCH_PREFIX}/include/${_d}" "${_qjobs_torch_inc}/${_d}" SYMBOLIC)
  endif()
endforeach()
set(TORCH_INCLUDE_DIRS "${_qjobs_torch_inc}" "${QJOBS_TORCH_PREFIX}/include/torch/csrc/api/include")
foreach(_t headeronly c10 c10_cuda torch_cpu torch_cuda torch)
  if(TARGET ${_t})
    get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(_inc)
      set(_new "")
      foreach(_i IN LISTS _inc)
        get_filename_component(_ri "${_i}" REALPATH)
        if(_ri STREQUAL "${QJOBS_TORCH_PREFIX}/include")
          list(APPEND _new "${_qjobs_torch_inc}")
        else()
          list(APPEND _new "${_i}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES _new)
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
    endif()
  endif()
endforeach()

# A pip torch's libtorch.so exports part of a newer libstdc++ it links in
# statically (std::filesystem, std::chrono's time zones, string streams: 182
# symbols in 2.11). Listed after it, the system's libstdc++ loses those names
# to it, and the copies in libtorch.so crash (std::filesystem::remove_all
# calls a null pointer). Everything that links libtorch therefore names
# libstdc++ first, so that the standard library's own symbols win.
set_property(TARGET torch APPEND PROPERTY INTERFACE_LINK_OPTIONS
             "SHELL:-Wl,--push-state,--no-as-needed -lstdc++ -Wl,--pop-state")

# The CUDA runtime the binaries name directly (torch::cudart) is found beside
# the wheel's own (site-packages/nvidia/cuXX/lib) when no system toolkit's
# directory holds it, as on a GPU machine with only pip's torch.
file(GLOB _qjobs_nvidia_libs LIST_DIRECTORIES true "${QJOBS_TORCH_PREFIX}/../nvidia/cu*/lib")
list(APPEND CMAKE_BUILD_RPATH ${_qjobs_nvidia_libs})

# The version, from the package's TorchConfigVersion.cmake.
set(QJOBS_TORCH_VERSION "${Torch_VERSION}")
set(QJOBS_TORCH_CUDA OFF)
set(QJOBS_TORCH_CUDA_VERSION "")
if(TARGET torch_cuda OR C10_CUDA_LIBRARY)
  set(QJOBS_TORCH_CUDA ON)
  if(CUDAToolkit_VERSION)
    set(QJOBS_TORCH_CUDA_VERSION "${CUDAToolkit_VERSION_MAJOR}.${CUDAToolkit_VERSION_MINOR}")
  elseif(CUDA_VERSION)
    set(QJOBS_TORCH_CUDA_VERSION "${CUDA_VERSION}")
  endif()
endif()
if(QJOBS_TORCH_VERSION VERSION_LESS 2.0)
  message(FATAL_ERROR "qjobs: libtorch ${QJOBS_TORCH_VERSION} at ${QJOBS_TORCH_PREFIX}; qjobs needs libtorch 2.x")
endif()
message(STATUS "qjobs: libtorch ${QJOBS_TORCH_VERSION} at ${QJOBS_TORCH_PREFIX}, CUDA: "
               "${QJOBS_TORCH_CUDA} ${QJOBS_TORCH_CUDA_VERSION}")
