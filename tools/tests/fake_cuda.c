/* A stand-in CUDA driver (build as libcuda.so.1) for testing bonsai's GPU libraries on
 * machines without a GPU. Kernels do not run; everything around them is checked:
 * - a PTX module must look like PTX and must not need external functions;
 * - a kernel must exist in its module; its launch must fit the hardware limits;
 * - every pointer argument (read from the PTX .entry parameter list) must point into managed
 *   memory that is still allocated;
 * - every managed allocation must be freed by the end of a run, and only once.
 * At exit it prints one summary line on stderr, which the tests read. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
enum { OK = 0, INVALID_VALUE = 1, INVALID_IMAGE = 200, NOT_FOUND = 500 };

#define MAX_ALLOCS 65536
static struct { char *p; size_t n; } live[MAX_ALLOCS];
static int nlive, allocs, frees, modules, launches, bad;

static void complain(const char *what, const char *detail) {
  bad++;
  fprintf(stderr, "fake cuda: %s%s\n", what, detail ? detail : "");
}

CUresult cuInit(unsigned f) { (void)f; return OK; }
CUresult cuDeviceGetCount(int *c) { *c = 1; return OK; }
CUresult cuDeviceGet(int *d, int o) { *d = o; return OK; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)0x1; return OK; }
CUresult cuCtxSetCurrent(void *c) { return c ? OK : INVALID_VALUE; }
CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = r == INVALID_IMAGE ? "invalid image (fake)" : r == NOT_FOUND ? "not found (fake)"
                                                                    : "error (fake)";
  return OK;
}

typedef struct { char *ptx; } Module;
typedef struct { int nparams; char isptr[512]; char name[128]; } Function;

CUresult cuModuleLoadDataEx(void **m, const void *image, unsigned n, int *opts, void **vals) {
  (void)n; (void)opts; (void)vals;
  const char *p = (const char *)image;
  if (!strstr(p, ".version") || !strstr(p, ".target sm_90") || !strstr(p, ".entry")) {
    complain("a module that is not sm_90 PTX", 0);
    return INVALID_IMAGE;
  }
  if (strstr(p, ".extern")) {
    complain("a module with external functions", 0);
    return INVALID_IMAGE;
  }
  Module *mod = (Module *)malloc(sizeof *mod);
  mod->ptx = strdup(p);
  *m = mod;
  modules++;
  return OK;
}

CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
  char key[160];
  snprintf(key, sizeof key, ".entry %s(", name);
  const char *e = strstr(((Module *)m)->ptx, key);
  if (!e) {
    complain("no kernel ", name);
    return NOT_FOUND;
  }
  Function *fn = (Function *)calloc(1, sizeof *fn);
  snprintf(fn->name, sizeof fn->name, "%s", name);
  const char *end = strchr(e, ')');
  for (const char *q = strstr(e, ".param"); q && q < end; q = strstr(q + 1, ".param")) {
    const char *eol = strchr(q, '\n');
    const char *ptr = strstr(q, ".ptr");
    fn->isptr[fn->nparams++] = ptr && (!eol || ptr < eol);
  }
  *f = fn;
  return OK;
}

static int managed(const char *p) {
  for (int i = 0; i < nlive; i++)
    if (p >= live[i].p && p < live[i].p + live[i].n) return 1;
  return 0;
}

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned smem, void *stream, void **params,
                        void **extra) {
  (void)smem; (void)stream; (void)extra;
  Function *fn = (Function *)f;
  launches++;
  if (!gx || !gy || !gz || gy > 65535 || gz > 65535 || !bx || !by || !bz || bz > 64 ||
      (unsigned long)bx * by * bz > 1024) {
    complain("launch outside the hardware limits: ", fn->name);
    return INVALID_VALUE;
  }
  for (int i = 0; i < fn->nparams; i++) {
    if (!fn->isptr[i]) continue;
    const char *p = *(char *const *)params[i];
    if (!managed(p)) {
      char msg[256];
      snprintf(msg, sizeof msg, "%s argument %d (%p) is not live managed memory", fn->name, i,
               (const void *)p);
      complain("kernel ", msg);
    }
  }
  return OK;
}

CUresult cuStreamCreate(void **s, unsigned f) { (void)f; *s = (void *)0x2; return OK; }
CUresult cuStreamSynchronize(void *s) { return s ? OK : INVALID_VALUE; }
CUresult cuStreamDestroy_v2(void *s) { return s ? OK : INVALID_VALUE; }

CUresult cuMemAllocManaged(unsigned long long *p, size_t n, unsigned flags) {
  (void)flags;
  if (nlive == MAX_ALLOCS) return INVALID_VALUE;
  char *b = (char *)malloc(n);
  live[nlive].p = b;
  live[nlive].n = n;
  nlive++;
  allocs++;
  *p = (unsigned long long)(uintptr_t)b;
  return OK;
}

CUresult cuMemFree_v2(unsigned long long p) {
  char *b = (char *)(uintptr_t)p;
  for (int i = 0; i < nlive; i++)
    if (live[i].p == b) {
      live[i] = live[--nlive];
      frees++;
      free(b);
      return OK;
    }
  complain("free of memory that is not allocated", 0);
  return INVALID_VALUE;
}

__attribute__((destructor)) static void summary(void) {
  fprintf(stderr, "fake cuda: %d modules, %d launches, %d allocations, %d freed, %d problems\n",
          modules, launches, allocs, frees, bad);
}
