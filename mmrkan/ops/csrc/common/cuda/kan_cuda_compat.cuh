// What the kernel headers need from the CUDA language, for nvcc and for the SIMT emulator.
//
// Under nvcc this adds only the shared-memory declaration macros and an empty vector-access
// check. With MMRKAN_SIMT_EMULATION (the host C++ build of csrc/emulation) the same kernel source
// is compiled by the host compiler against the emulator, which provides threadIdx, blockIdx,
// blockDim, gridDim, __syncthreads(), __shfl_down_sync(), __umulhi() and per-block shared memory
// (see csrc/emulation/simt.h).
#pragma once

#ifdef MMRKAN_SIMT_EMULATION
#include "../../emulation/simt.h"

#define MMRKAN_SHARED_ARRAY(type, name, extents) \
  type(&name) extents = ::mmrkan::simt::static_shared<type extents>()
#define MMRKAN_DYNAMIC_SMEM(type, name) type* name = ::mmrkan::simt::dynamic_shared<type>()
// A GPU faults on a vector access through a misaligned address; the emulator checks it.
#define MMRKAN_CHECK_VECTOR_ACCESS(ptr, bytes, what) \
  ::mmrkan::simt::check_vector_access(ptr, bytes, what)

#else  // nvcc

// `__shared__ type name extents;`, e.g. MMRKAN_SHARED_ARRAY(float, sums, [8][4]).
#define MMRKAN_SHARED_ARRAY(type, name, extents) __shared__ type name extents
// The block's dynamic shared memory (the launch's third <<<>>> argument), 16-byte aligned.
#define MMRKAN_DYNAMIC_SMEM(type, name) extern __shared__ __align__(16) type name[]
#define MMRKAN_CHECK_VECTOR_ACCESS(ptr, bytes, what)

#endif
