/* bonsai CUDA support: the `mgpu*` entry points that MLIR's GPU host code calls, on the CUDA
 * driver API opened at run time (dlopen of libcuda.so.1), so the library builds and loads
 * without CUDA and reports a clear error where there is no driver or device.
 *
 * Memory: every buffer the generated code allocates (`bonsai_gpu_malloc`) is CUDA managed
 * memory, which host code (copies) and kernels both address; the flat-buffer entry copies
 * inputs in and outputs out. Kernel modules are PTX, JIT-compiled by the driver on first use.
 * Modules are registered at the first run. Launches are synchronous. After the first failure every later launch is skipped, and
 * `bonsai_model_error()` says what failed. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;

static struct {
  void *lib;
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetCount)(int *);
  CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*ModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, unsigned, CUstream, void **, void **);
  CUresult (*StreamCreate)(CUstream *, unsigned);
  CUresult (*StreamSynchronize)(CUstream);
  CUresult (*StreamDestroy)(CUstream);
  CUresult (*MemAllocManaged)(CUdeviceptr *, size_t, unsigned);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*GetErrorString)(CUresult, const char **);
} cu;

static int gpu_state; /* 0: not tried, 1: ready, -1: unavailable */
static CUcontext gpu_ctx;
static int run_failed;
static char run_error[2048];

static void fail(const char *fmt, ...) {
  if (run_failed) return; /* keep the first cause */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(run_error, sizeof run_error, fmt, ap);
  va_end(ap);
  run_failed = 1;
}

static const char *cu_error(CUresult r) {
  const char *s = 0;
  if (cu.GetErrorString && cu.GetErrorString(r, &s) == 0 && s) return s;
  return "unknown CUDA error";
}

/* Open the driver and make device BONSAI_CUDA_DEVICE (default 0) current. */
static int gpu_init(void) {
  if (gpu_state) return gpu_state > 0;
  gpu_state = -1;
  cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cu.lib) {
    fail("no CUDA driver: %s; this library runs on an NVIDIA GPU (compile with --target cpu "
         "for the CPU)", dlerror());
    return 0;
  }
#define LOAD(field, name)                                                    \
  if (!(*(void **)&cu.field = dlsym(cu.lib, name))) {                        \
    fail("the CUDA driver lacks %s (too old a driver?)", name);              \
    return 0;                                                                \
  }
  LOAD(Init, "cuInit");
  LOAD(DeviceGet, "cuDeviceGet");
  LOAD(DeviceGetCount, "cuDeviceGetCount");
  LOAD(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  LOAD(CtxSetCurrent, "cuCtxSetCurrent");
  LOAD(ModuleLoadDataEx, "cuModuleLoadDataEx");
  LOAD(ModuleGetFunction, "cuModuleGetFunction");
  LOAD(LaunchKernel, "cuLaunchKernel");
  LOAD(StreamCreate, "cuStreamCreate");
  LOAD(StreamSynchronize, "cuStreamSynchronize");
  LOAD(StreamDestroy, "cuStreamDestroy_v2");
  LOAD(MemAllocManaged, "cuMemAllocManaged");
  LOAD(MemFree, "cuMemFree_v2");
  LOAD(GetErrorString, "cuGetErrorString");
#undef LOAD
  CUresult r = cu.Init(0);
  if (r) {
    fail("cuInit failed: %s", cu_error(r));
    return 0;
  }
  int count = 0, ordinal = 0;
  const char *env = getenv("BONSAI_CUDA_DEVICE");
  if (env) ordinal = atoi(env);
  if ((r = cu.DeviceGetCount(&count)) || count == 0) {
    fail("no CUDA device (%s)", r ? cu_error(r) : "the driver reports none");
    return 0;
  }
  if (ordinal < 0 || ordinal >= count) {
    fail("BONSAI_CUDA_DEVICE=%d, but there are %d device(s)", ordinal, count);
    return 0;
  }
  CUdevice dev;
  if ((r = cu.DeviceGet(&dev, ordinal)) || (r = cu.PrimaryCtxRetain(&gpu_ctx, dev))) {
    fail("cannot open CUDA device %d: %s", ordinal, cu_error(r));
    return 0;
  }
  gpu_state = 1;
  return 1;
}

/* The host code's module constructors (each registers one PTX module), which the JIT engine
 * collected into one initialiser: the object file has no .init_array entries for them. */
extern void bonsai_register_modules(void) __asm__("__orc_init_func.LLVMDialectModule");

/* Called by the entry at the start of every run: clears the last run's error. */
int bonsai_gpu_begin(void) {
  static int registered;
  if (gpu_state >= 0) {
    run_failed = 0;
    run_error[0] = 0;
  }
  if (!gpu_init()) return 0;
  if (!registered) {
    bonsai_register_modules();
    registered = 1;
  }
  CUresult r = cu.CtxSetCurrent(gpu_ctx);
  if (r) {
    fail("cuCtxSetCurrent failed: %s", cu_error(r));
    return 0;
  }
  return 1;
}

int bonsai_gpu_ok(void) { return !run_failed; }

const char *bonsai_model_error(void) { return run_failed ? run_error : 0; }

/* Allocations carry a 16-byte header saying where they live, so that a failed managed
 * allocation can fall back to host memory (the run then reports the failure). */
void *bonsai_gpu_malloc(size_t n) {
  CUdeviceptr p = 0;
  if (gpu_state > 0) {
    CUresult r = cu.MemAllocManaged(&p, n + 16, 1 /* CU_MEM_ATTACH_GLOBAL */);
    if (r) {
      fail("cuMemAllocManaged(%zu bytes) failed: %s", n + 16, cu_error(r));
      p = 0;
    }
  }
  char *b = p ? (char *)(uintptr_t)p : (char *)malloc(n + 16);
  if (!b) {
    fail("out of host memory (%zu bytes)", n + 16);
    abort();
  }
  *(uint64_t *)b = p ? 1 : 2;
  return b + 16;
}

void bonsai_gpu_free(void *q) {
  if (!q) return;
  char *b = (char *)q - 16;
  if (*(uint64_t *)b == 1)
    cu.MemFree((CUdeviceptr)(uintptr_t)b);
  else
    free(b);
}

/* A kernel module: PTX text, loaded (JIT-compiled) on first use. */
typedef struct {
  const char *ptx;
  int opt;
  CUmodule mod;
} bonsai_module;

void *mgpuModuleLoadJIT(void *data, int opt) {
  bonsai_module *m = (bonsai_module *)calloc(1, sizeof *m);
  if (!m) return 0;
  m->ptx = (const char *)data;
  m->opt = opt;
  return m;
}

void mgpuModuleUnload(void *h) {
  /* Runs at exit or unload, possibly after the driver's own teardown: the driver module is
   * left to the driver. */
  free(h);
}

void *mgpuModuleGetFunction(void *h, const char *name) {
  bonsai_module *m = (bonsai_module *)h;
  if (run_failed || gpu_state <= 0) return 0;
  if (!m) {
    fail("kernel %s: its module was not registered (out of memory at load)", name);
    return 0;
  }
  if (!m->mod) {
    char log[8192] = {0};
    int opts[] = {5 /* CU_JIT_ERROR_LOG_BUFFER */, 6 /* ..._SIZE_BYTES */,
                  7 /* CU_JIT_OPTIMIZATION_LEVEL */};
    void *vals[] = {log, (void *)(uintptr_t)sizeof log, (void *)(uintptr_t)m->opt};
    CUresult r = cu.ModuleLoadDataEx(&m->mod, m->ptx, 3, opts, vals);
    if (r) {
      m->mod = 0;
      fail("loading a PTX module failed: %s%s%s", cu_error(r), log[0] ? "\n" : "", log);
      return 0;
    }
  }
  CUfunction f = 0;
  CUresult r = cu.ModuleGetFunction(&f, m->mod, name);
  if (r) {
    fail("kernel %s: %s", name, cu_error(r));
    return 0;
  }
  return f;
}

void *mgpuStreamCreate(void) {
  CUstream s = 0;
  if (run_failed || gpu_state <= 0) return 0;
  CUresult r = cu.StreamCreate(&s, 1 /* CU_STREAM_NON_BLOCKING */);
  if (r) fail("cuStreamCreate failed: %s", cu_error(r));
  return s;
}

void mgpuLaunchKernel(void *f, intptr_t gx, intptr_t gy, intptr_t gz, intptr_t bx,
                      intptr_t by, intptr_t bz, int32_t smem, void *stream, void **params,
                      void **extra, size_t nparams) {
  (void)nparams;
  if (run_failed || !f) return;
  CUresult r = cu.LaunchKernel(f, (unsigned)gx, (unsigned)gy, (unsigned)gz, (unsigned)bx,
                               (unsigned)by, (unsigned)bz, (unsigned)smem, stream, params,
                               extra);
  if (r)
    fail("kernel launch (grid %ldx%ldx%ld, block %ldx%ldx%ld) failed: %s", (long)gx, (long)gy,
         (long)gz, (long)bx, (long)by, (long)bz, cu_error(r));
}

void mgpuStreamSynchronize(void *s) {
  if (run_failed || !s) return;
  CUresult r = cu.StreamSynchronize(s);
  if (r) fail("a kernel failed: %s", cu_error(r));
}

void mgpuStreamDestroy(void *s) {
  if (s && gpu_state > 0) cu.StreamDestroy(s);
}
