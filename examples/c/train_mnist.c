/* Train an exported MLP on MNIST from C, with no Python and no LLVM at run time.
 *
 *   mlpc aot examples/models/mnist_mlp.py -o build --name mnist_mlp      (or mlpc.export(trainer, "build", "mnist_mlp"))
 *   gunzip -kr mlpc/data/mnist                                           (this program reads raw IDX files)
 *   cc -O2 -Ibuild examples/c/train_mnist.c -Lbuild -lmnist_mlp -Wl,-rpath,'$ORIGIN/build' -lm -o train_mnist
 *   ./train_mnist mlpc/data/mnist 500 [--load in.safetensors] [--save out.safetensors]
 *
 * Step i trains on rows [(i mod E) * B, (i mod E) * B + B) of the training set in file order,
 * E = 60000 / B, with pixels standardized exactly as mlpc.datasets.mnist() does. It prints each
 * step's loss and, at the end, the test accuracy from mnist_mlp_predict_n. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mnist_mlp.h"

#define MEAN 0.1307f
#define STD 0.3081f

/* Reads an uncompressed IDX file of unsigned bytes: checks the magic number, dimensions and size. */
static unsigned char *read_idx(const char *dir, const char *file, int ndim, uint32_t *dims, size_t *count)
{
    char path[4096];
    unsigned char head[4], d[4];
    unsigned char *data;
    FILE *f;
    size_t n = 1;
    int i;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (!(f = fopen(path, "rb"))) {
        fprintf(stderr, "cannot open %s (gunzip the .gz files first)\n", path);
        return NULL;
    }
    if (fread(head, 1, 4, f) != 4 || head[0] || head[1] || head[2] != 0x08 || head[3] != ndim) {
        fprintf(stderr, "%s is not a %d-dimensional unsigned-byte IDX file\n", path, ndim);
        fclose(f);
        return NULL;
    }
    for (i = 0; i < ndim; i++) {
        if (fread(d, 1, 4, f) != 4) {
            fclose(f);
            return NULL;
        }
        dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        n *= dims[i];
    }
    data = malloc(n ? n : 1);
    if (!data || fread(data, 1, n, f) != n || fgetc(f) != EOF) {
        fprintf(stderr, "%s is truncated or too long\n", path);
        free(data);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *count = n;
    return data;
}

/* MNIST split `prefix` ("train" or "t10k") as standardized floats and int32 labels. */
static int load_split(const char *dir, const char *prefix, float **x, int32_t **y, size_t *rows)
{
    char name[64];
    uint32_t idims[3], ldims[1];
    size_t ni, nl, i;
    unsigned char *img, *lab;
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    img = read_idx(dir, name, 3, idims, &ni);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    lab = read_idx(dir, name, 1, ldims, &nl);
    if (!img || !lab || idims[0] != ldims[0] || idims[1] * idims[2] != MNIST_MLP_IN_FEATURES) {
        free(img);
        free(lab);
        return 0;
    }
    *rows = ldims[0];
    *x = malloc(sizeof(float) * ni);
    *y = malloc(sizeof(int32_t) * nl);
    if (!*x || !*y)
        return 0;
    for (i = 0; i < ni; i++)
        (*x)[i] = ((float)img[i] / 255.0f - MEAN) / STD;
    for (i = 0; i < nl; i++)
        (*y)[i] = lab[i];
    free(img);
    free(lab);
    return 1;
}

static int check(int rc, const char *what)
{
    if (rc != MLPC_OK)
        fprintf(stderr, "%s failed (%d): %s\n", what, rc, mnist_mlp_last_error());
    return rc == MLPC_OK;
}

int main(int argc, char **argv)
{
    const char *load = NULL, *save = NULL;
    float *xtr, *xte, *logits, loss;
    int32_t *ytr, *yte;
    size_t ntr, nte, i, correct = 0;
    long steps, s, epoch_batches;
    mnist_mlp_state *state;
    int a;

    if (argc < 3) {
        fprintf(stderr, "usage: %s MNIST_DIR STEPS [--load FILE] [--save FILE]\n", argv[0]);
        return 2;
    }
    steps = atol(argv[2]);
    for (a = 3; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--load")) load = argv[a + 1];
        else if (!strcmp(argv[a], "--save")) save = argv[a + 1];
    }
    if (mnist_mlp_abi_version != MNIST_MLP_ABI_VERSION) {
        fprintf(stderr, "library ABI %u, header ABI %d\n", (unsigned)mnist_mlp_abi_version, MNIST_MLP_ABI_VERSION);
        return 1;
    }
    if (!load_split(argv[1], "train", &xtr, &ytr, &ntr) || !load_split(argv[1], "t10k", &xte, &yte, &nte))
        return 1;
    if (!check(mnist_mlp_create(&state), "create") || (load && !check(mnist_mlp_load(state, load), "load")))
        return 1;
    epoch_batches = (long)(ntr / MNIST_MLP_BATCH);
    for (s = 0; s < steps; s++) {
        size_t row = (size_t)(s % epoch_batches) * MNIST_MLP_BATCH;
        if (!check(mnist_mlp_train_step(state, xtr + row * MNIST_MLP_IN_FEATURES, ytr + row, &loss), "train_step"))
            return 1;
        printf("step %ld loss %.9g\n", s, loss);
    }
    logits = malloc(sizeof(float) * nte * MNIST_MLP_OUT_FEATURES);
    if (!logits || !check(mnist_mlp_predict_n(state, (int64_t)nte, xte, logits), "predict"))
        return 1;
    for (i = 0; i < nte; i++) {
        const float *row = logits + i * MNIST_MLP_OUT_FEATURES;
        int k, best = 0;
        for (k = 1; k < MNIST_MLP_OUT_FEATURES; k++)
            if (row[k] > row[best])
                best = k;
        correct += best == yte[i];
    }
    printf("test accuracy %.4f\n", (double)correct / (double)nte);
    if (save && !check(mnist_mlp_save(state, save), "save"))
        return 1;
    mnist_mlp_destroy(state);
    free(xtr); free(ytr); free(xte); free(yte); free(logits);
    return 0;
}
