/* Train and run an exported model from C (docs/aot.md). */
#include <stdio.h>
#include <stdlib.h>
#include "mnist_mlp.h"

enum { B = MNIST_MLP_BATCH, IN = MNIST_MLP_IN_FEATURES, OUT = MNIST_MLP_OUT_FEATURES };
static float x[B * IN], logits[B * OUT];
static int32_t y[B];

static int fail(void) { fprintf(stderr, "mnist_mlp: %s\n", mnist_mlp_last_error()); return 1; }

int main(void)
{
    mnist_mlp_state *s;
    float loss = 0;
    int correct = 0;
    for (int i = 0; i < B; i++) {          /* a toy batch: class c has bright pixels at j % OUT == c */
        y[i] = i % OUT;
        for (int j = 0; j < IN; j++)
            x[i * IN + j] = (float)rand() / (float)RAND_MAX + (j % OUT == y[i] ? 1.0f : 0.0f);
    }
    if (mnist_mlp_create(&s) != MLPC_OK) return fail();
    for (int step = 0; step < 50; step++)
        if (mnist_mlp_train_step(s, x, y, &loss) != MLPC_OK) return fail();
    if (mnist_mlp_predict(s, x, logits) != MLPC_OK) return fail();
    for (int i = 0; i < B; i++) {
        int best = 0;
        for (int k = 1; k < OUT; k++) best = logits[i * OUT + k] > logits[i * OUT + best] ? k : best;
        correct += best == y[i];
    }
    printf("loss %.4f, accuracy %d/%d\n", loss, correct, B);
    if (mnist_mlp_save(s, "trained.safetensors") != MLPC_OK) return fail();
    mnist_mlp_destroy(s);
    return 0;
}
