/* Example: run a model compiled by `bonsai compile` from C.
 *
 *   bonsai compile model.onnx -o build --shape input=1x1x28x28
 *   cc tools/examples/run_model.c -Ibuild -Lbuild -lmodel -Wl,-rpath,build -o run_model
 *   ./run_model input.raw output.raw [RUNS]
 *
 * input.raw holds the first input's elements (row-major, little-endian, as model.h says);
 * output.raw receives the first output's. Models with one input and one output. With RUNS,
 * the model is also run RUNS more times and the mean time per run is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model.h"

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4 || BONSAI_NUM_INPUTS != 1 || BONSAI_NUM_OUTPUTS != 1) {
    fprintf(stderr, "usage: %s INPUT.raw OUTPUT.raw [RUNS] (one-input, one-output models)\n",
            argv[0]);
    return 2;
  }
  size_t n_in = BONSAI_INPUT0_ELEMENTS, n_out = BONSAI_OUTPUT0_ELEMENTS;
  bonsai_input0_t *in = malloc(n_in * sizeof *in);
  bonsai_output0_t *out = malloc(n_out * sizeof *out);
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(in, sizeof *in, n_in, f) != n_in) {
    fprintf(stderr, "%s: expected %zu elements\n", argv[1], n_in);
    return 1;
  }
  fclose(f);
  const void *inputs[1] = {in};
  void *outputs[1] = {out};
  bonsai_model_run(inputs, outputs);
  f = fopen(argv[2], "wb");
  if (!f || fwrite(out, sizeof *out, n_out, f) != n_out) {
    fprintf(stderr, "%s: cannot write\n", argv[2]);
    return 1;
  }
  fclose(f);
  size_t best = 0;
  for (size_t i = 1; i < n_out; i++)
    if (out[i] > out[best]) best = i;
  printf("output 0: %zu values, argmax %zu\n", n_out, best);
  if (argc == 4) {
    int runs = atoi(argv[3]);
    bonsai_keep_freed_memory();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < runs; i++) bonsai_model_run(inputs, outputs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3;
    printf("%d runs: %.1f us per run\n", runs, runs > 0 ? us / runs : 0.0);
  }
  free(in);
  free(out);
  return 0;
}
