/* mlpc ahead-of-time runtime support, part 2: safetensors read/write with the mlpc checkpoint
 * checksum (the format of mlpc/checkpoint.py), on top of support.c. Pasted into every library's
 * glue; everything here is static. */

/* ---- safetensors ---------------------------------------------------------------------------- */

typedef struct mlpc__entry {
    char name[MLPC__MAX_NAME];
    char dtype[16];
    int ndim;
    int64_t shape[MLPC__MAXDIM];
    uint64_t begin, end;
} mlpc__entry;

static const char *mlpc__np_dtype(const char *st)
{
    static const char *const map[][2] = {
        {"F32", "float32"}, {"I32", "int32"}, {"F64", "float64"}, {"F16", "float16"}, {"I64", "int64"},
        {"I16", "int16"}, {"I8", "int8"}, {"U8", "uint8"}, {"U16", "uint16"}, {"U32", "uint32"},
        {"U64", "uint64"}, {"BOOL", "bool"},
    };
    size_t i;
    for (i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(st, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static size_t mlpc__st_elsize(const char *st)
{
    if (!strcmp(st, "F64") || !strcmp(st, "I64") || !strcmp(st, "U64")) return 8;
    if (!strcmp(st, "F32") || !strcmp(st, "I32") || !strcmp(st, "U32")) return 4;
    if (!strcmp(st, "F16") || !strcmp(st, "I16") || !strcmp(st, "U16")) return 2;
    return 1;
}

static int mlpc__entry_cmp(const void *a, const void *b)
{
    return strcmp(((const mlpc__entry *)a)->name, ((const mlpc__entry *)b)->name);
}

/* Parses one tensor description {"dtype":..,"shape":[..],"data_offsets":[b,e]} into e. */
static int mlpc__tensor(mlpc__json *j, mlpc__entry *e)
{
    char key[32];
    int have = 0;
    if (!mlpc__eat(j, '{'))
        return 0;
    if (mlpc__eat(j, '}'))
        return 0;
    for (;;) {
        if (!mlpc__string(j, key, sizeof key) || !mlpc__eat(j, ':')) {
            return 0;
        } else if (!strcmp(key, "dtype")) {
            if (!mlpc__string(j, e->dtype, sizeof e->dtype))
                return 0;
            have |= 1;
        } else if (!strcmp(key, "shape")) {
            if (!mlpc__eat(j, '['))
                return 0;
            e->ndim = 0;
            if (!mlpc__eat(j, ']')) {
                for (;;) {
                    uint64_t d;
                    if (e->ndim >= MLPC__MAXDIM || !mlpc__uint(j, &d) || d > (uint64_t)INT64_MAX)
                        return 0;
                    e->shape[e->ndim++] = (int64_t)d;
                    if (mlpc__eat(j, ']'))
                        break;
                    if (!mlpc__eat(j, ','))
                        return 0;
                }
            }
            have |= 2;
        } else if (!strcmp(key, "data_offsets")) {
            if (!mlpc__eat(j, '[') || !mlpc__uint(j, &e->begin) || !mlpc__eat(j, ',') || !mlpc__uint(j, &e->end)
                || !mlpc__eat(j, ']'))
                return 0;
            have |= 4;
        } else if (!mlpc__skip(j, 1)) {
            return 0;
        }
        if (mlpc__eat(j, '}'))
            return have == 7;
        if (!mlpc__eat(j, ','))
            return 0;
    }
}

/* Reads the metadata object: keeps mlpc.checksum and mlpc.steps, skips the rest. */
static int mlpc__metadata(mlpc__json *j, char checksum[65], int64_t *steps)
{
    char key[64];
    char value[80];
    if (!mlpc__eat(j, '{'))
        return 0;
    if (mlpc__eat(j, '}'))
        return 1;
    for (;;) {
        int ok;
        /* keys longer than our buffer are not ones we read: skip them */
        mlpc__json save = *j;
        if (!mlpc__string(j, key, sizeof key)) {
            *j = save;
            if (!mlpc__string(j, NULL, 0))
                return 0;
            key[0] = '\0';
        }
        if (!mlpc__eat(j, ':'))
            return 0;
        if (!strcmp(key, "mlpc.checksum") || !strcmp(key, "mlpc.steps")) {
            ok = mlpc__string(j, value, sizeof value);
            if (ok && key[5] == 'c') {
                if (strlen(value) != 64)
                    return 0;
                memcpy(checksum, value, 65);
            } else if (ok) {
                char *endp;
                long long v = strtoll(value, &endp, 10);
                if (*value && !*endp && v >= 0)
                    *steps = v;
            }
        } else {
            ok = mlpc__string(j, NULL, 0);
        }
        if (!ok)
            return 0;
        if (mlpc__eat(j, '}'))
            return 1;
        if (!mlpc__eat(j, ','))
            return 0;
    }
}

/* Loads a safetensors image into the model's buffers (dst[i] for bufs[i]). Nothing is written
 * unless the whole file checks out: format, bounds, checksum (when present), names, dtypes and
 * shapes. Tensors named state/... and hyper/... are ignored when skip_state (inference-only libraries);
 * a missing hyper/... tensor (a checkpoint written before runtime hyperparameters) keeps the current value. */
static int mlpc__st_read(const unsigned char *data, size_t size, const char *what, const mlpc__buf *bufs,
                         int nbuf, int skip_state, void *const *dst, int64_t *steps)
{
    uint64_t hlen;
    size_t dsize, count = 0, cap = 0, i;
    mlpc__entry *entries = NULL, *e;
    const unsigned char *payload;
    char checksum[65] = "";
    int64_t file_steps = -1;
    int *found = NULL, status = MLPC_OK, b;
    mlpc__json j;

    if (size < 8)
        return mlpc__fail(MLPC_E_FORMAT, "%s is not a safetensors file (%zu bytes)", what, size);
    memcpy(&hlen, data, 8);
    if (hlen > size - 8 || hlen > MLPC__MAX_HEADER)
        return mlpc__fail(MLPC_E_FORMAT, "%s is truncated or corrupt (header of %llu bytes in a file of %zu)",
                          what, (unsigned long long)hlen, size);
    payload = data + 8 + hlen;
    dsize = size - 8 - (size_t)hlen;
    j.p = (const char *)data + 8;
    j.end = j.p + hlen;
    if (!mlpc__eat(&j, '{'))
        return mlpc__fail(MLPC_E_FORMAT, "%s is corrupt: its header is not a JSON object", what);
    if (!mlpc__eat(&j, '}')) {
        for (;;) {
            char name[MLPC__MAX_NAME];
            if (!mlpc__string(&j, name, sizeof name) || !mlpc__eat(&j, ':')) {
                status = mlpc__fail(MLPC_E_FORMAT, "%s is corrupt: bad tensor name in its header", what);
                goto done;
            }
            if (!strcmp(name, "__metadata__")) {
                if (!mlpc__metadata(&j, checksum, &file_steps)) {
                    status = mlpc__fail(MLPC_E_FORMAT, "%s is corrupt: bad __metadata__", what);
                    goto done;
                }
            } else {
                if (count == MLPC__MAX_TENSORS) {
                    status = mlpc__fail(MLPC_E_FORMAT, "%s names more than %d tensors", what, MLPC__MAX_TENSORS);
                    goto done;
                }
                if (count == cap) {
                    size_t ncap = cap ? 2 * cap : 32;
                    mlpc__entry *grown = (mlpc__entry *)realloc(entries, ncap * sizeof *entries);
                    if (!grown) {
                        status = mlpc__fail(MLPC_E_NOMEM, "out of memory reading %s", what);
                        goto done;
                    }
                    entries = grown;
                    cap = ncap;
                }
                e = &entries[count];
                memset(e, 0, sizeof *e);
                memcpy(e->name, name, strlen(name) + 1);
                if (!mlpc__tensor(&j, e)) {
                    status = mlpc__fail(MLPC_E_FORMAT, "%s is corrupt: bad description of tensor '%s'", what, name);
                    goto done;
                }
                count++;
            }
            if (mlpc__eat(&j, '}'))
                break;
            if (!mlpc__eat(&j, ',')) {
                status = mlpc__fail(MLPC_E_FORMAT, "%s is corrupt: malformed header JSON", what);
                goto done;
            }
        }
    }
    mlpc__ws(&j);
    if (j.p != j.end) {
        status = mlpc__fail(MLPC_E_FORMAT, "%s is corrupt: bytes after the header JSON", what);
        goto done;
    }
    /* bounds, sizes and dtypes of every tensor */
    for (i = 0; i < count; i++) {
        uint64_t n = 1;
        int d;
        e = &entries[i];
        if (!mlpc__np_dtype(e->dtype)) {
            status = mlpc__fail(MLPC_E_FORMAT, "%s: tensor '%s' has unsupported dtype %s", what, e->name, e->dtype);
            goto done;
        }
        for (d = 0; d < e->ndim; d++) {
            if (e->shape[d] != 0 && n > UINT64_MAX / 8 / (uint64_t)e->shape[d]) {
                status = mlpc__fail(MLPC_E_FORMAT, "%s: tensor '%s' is impossibly large", what, e->name);
                goto done;
            }
            n *= (uint64_t)e->shape[d];
        }
        if (e->begin > e->end || e->end > dsize || e->end - e->begin != n * mlpc__st_elsize(e->dtype)) {
            status = mlpc__fail(MLPC_E_FORMAT, "%s is truncated or corrupt: tensor '%s' has data offsets "
                                "[%llu, %llu] for %llu elements of %s in %zu data bytes", what, e->name,
                                (unsigned long long)e->begin, (unsigned long long)e->end,
                                (unsigned long long)n, e->dtype, dsize);
            goto done;
        }
    }
    if (count > 1) {
        qsort(entries, count, sizeof *entries, mlpc__entry_cmp);
        for (i = 1; i < count; i++)
            if (!strcmp(entries[i].name, entries[i - 1].name)) {
                status = mlpc__fail(MLPC_E_FORMAT, "%s names tensor '%s' twice", what, entries[i].name);
                goto done;
            }
    }
    if (checksum[0]) {
        mlpc__sha256 s;
        char got[65];
        mlpc__sha256_init(&s);
        for (i = 0; i < count; i++) {
            e = &entries[i];
            mlpc__checksum_tensor(&s, e->name, mlpc__np_dtype(e->dtype), e->ndim, e->shape, payload + e->begin,
                                  (size_t)(e->end - e->begin));
        }
        mlpc__sha256_hex(&s, got);
        if (strcmp(got, checksum) != 0) {
            status = mlpc__fail(MLPC_E_FORMAT, "%s failed its checksum: the file is damaged", what);
            goto done;
        }
    }
    /* names, dtypes and shapes against the model */
    found = (int *)calloc((size_t)nbuf + 1, sizeof *found);
    if (!found) {
        status = mlpc__fail(MLPC_E_NOMEM, "out of memory reading %s", what);
        goto done;
    }
    for (i = 0; i < count; i++) {
        int d, ok;
        e = &entries[i];
        for (b = 0; b < nbuf; b++)
            if (!strcmp(bufs[b].key, e->name))
                break;
        if (b == nbuf) {
            if (skip_state && (!strncmp(e->name, "state/", 6) || !strncmp(e->name, "hyper/", 6)))
                continue;
            status = mlpc__fail(MLPC_E_MISMATCH, "%s holds tensor '%s', which this model does not have", what,
                                e->name);
            goto done;
        }
        if (strcmp(e->dtype, bufs[b].dtype == MLPC_I32 ? "I32" : "F32") != 0) {
            status = mlpc__fail(MLPC_E_MISMATCH, "%s: tensor '%s' is %s, the model's is %s", what, e->name,
                                e->dtype, bufs[b].dtype == MLPC_I32 ? "I32" : "F32");
            goto done;
        }
        ok = e->ndim == bufs[b].ndim;
        for (d = 0; ok && d < e->ndim; d++)
            ok = e->shape[d] == bufs[b].shape[d];
        if (!ok && bufs[b].ndim == 0 && e->ndim == 1 && e->shape[0] == 1)
            ok = 1; /* a scalar saved as [1] */
        if (!ok) {
            status = mlpc__fail(MLPC_E_MISMATCH, "%s: tensor '%s' does not have the model's shape", what, e->name);
            goto done;
        }
        found[b] = (int)i + 1;
    }
    for (b = 0; b < nbuf; b++)
        if (!found[b] && bufs[b].role != MLPC_HYPER) { /* checkpoints before ABI 2 have no hyper/ tensors */
            status = mlpc__fail(MLPC_E_MISMATCH, "%s lacks tensor '%s' needed by the model", what, bufs[b].key);
            goto done;
        }
    for (b = 0; b < nbuf; b++) {
        if (!found[b])
            continue;
        e = &entries[found[b] - 1];
        memcpy(dst[b], payload + e->begin, (size_t)(e->end - e->begin));
    }
    if (file_steps >= 0)
        *steps = file_steps;
done:
    free(found);
    free(entries);
    return status;
}

typedef struct mlpc__text {
    char *p;
    size_t n, cap;
    int failed;
} mlpc__text;

static void mlpc__put(mlpc__text *t, const char *fmt, ...)
{
    va_list ap;
    int need;
    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        need = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (need < 0) {
            t->failed = 1;
            return;
        }
        if (t->p && t->n + (size_t)need < t->cap) {
            t->n += (size_t)need;
            return;
        }
        {
            size_t ncap = (t->cap ? t->cap * 2 : 4096) + (size_t)need;
            char *grown = (char *)realloc(t->p, ncap);
            if (!grown) {
                t->failed = 1;
                return;
            }
            t->p = grown;
            t->cap = ncap;
        }
    }
}

static int mlpc__write_all(int fd, const void *data, size_t n)
{
    const char *p = (const char *)data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

/* Writes the buffers as an mlpc checkpoint (safetensors): `meta_json` holds the model's fixed
 * metadata entries ("key":"value",...), the step count and the checksum are added here. The file
 * is written to a temporary name in the same folder, synced, and renamed over `path`; when `path`
 * is a symlink to an existing file, over that file (the link stays a link). */
static int mlpc__st_write(const char *path, const mlpc__buf *bufs, int nbuf, void *const *src,
                          const int *sorted, const char *meta_json, int64_t steps)
{
    mlpc__text t = {NULL, 0, 0, 0};
    mlpc__sha256 s;
    char sum[65], *tmp = NULL, *real = NULL;
    uint64_t off = 0, hlen;
    int i, d, fd = -1, status = MLPC_OK;

    if (!path || !*path)
        return mlpc__fail(MLPC_E_ARGUMENT, "save: no path given");
    mlpc__sha256_init(&s);
    for (i = 0; i < nbuf; i++) {
        const mlpc__buf *b = &bufs[sorted[i]];
        mlpc__checksum_tensor(&s, b->key, b->dtype == MLPC_I32 ? "int32" : "float32", b->ndim, b->shape,
                              src[sorted[i]], (size_t)b->numel * mlpc__elsize(b->dtype));
    }
    mlpc__sha256_hex(&s, sum);
    mlpc__put(&t, "{\"__metadata__\":{%s%s\"mlpc.steps\":\"%lld\",\"mlpc.checksum\":\"%s\"}", meta_json,
              *meta_json ? "," : "", (long long)steps, sum);
    for (i = 0; i < nbuf; i++) {
        uint64_t nbytes = (uint64_t)bufs[i].numel * mlpc__elsize(bufs[i].dtype);
        mlpc__put(&t, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", bufs[i].key, bufs[i].dtype == MLPC_I32 ? "I32" : "F32");
        for (d = 0; d < bufs[i].ndim; d++)
            mlpc__put(&t, d ? ",%lld" : "%lld", (long long)bufs[i].shape[d]);
        if (bufs[i].ndim == 0)
            mlpc__put(&t, "1"); /* scalars are stored as [1], as Trainer.save does */
        mlpc__put(&t, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nbytes));
        off += nbytes;
    }
    mlpc__put(&t, "}");
    while (!t.failed && t.n % 8)
        mlpc__put(&t, " ");
    if (t.failed) {
        status = mlpc__fail(MLPC_E_NOMEM, "save %s: out of memory", path);
        goto done;
    }
    real = realpath(path, NULL); /* NULL when the file does not exist yet: write `path` itself */
    if (real)
        path = real;
    tmp = (char *)malloc(strlen(path) + 16);
    if (!tmp) {
        status = mlpc__fail(MLPC_E_NOMEM, "save %s: out of memory", path);
        goto done;
    }
    sprintf(tmp, "%s.tmp-XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        status = mlpc__fail(MLPC_E_IO, "save %s: cannot create a temporary file: %s", path, strerror(errno));
        goto done;
    }
    hlen = (uint64_t)t.n;
    if (!mlpc__write_all(fd, &hlen, 8) || !mlpc__write_all(fd, t.p, t.n)) {
        status = mlpc__fail(MLPC_E_IO, "save %s: %s", path, strerror(errno));
        goto done;
    }
    for (i = 0; i < nbuf; i++)
        if (!mlpc__write_all(fd, src[i], (size_t)bufs[i].numel * mlpc__elsize(bufs[i].dtype))) {
            status = mlpc__fail(MLPC_E_IO, "save %s: %s", path, strerror(errno));
            goto done;
        }
    if (fsync(fd) != 0) {
        status = mlpc__fail(MLPC_E_IO, "save %s: fsync failed: %s", path, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        status = mlpc__fail(MLPC_E_IO, "save %s: %s", path, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        status = mlpc__fail(MLPC_E_IO, "save %s: cannot rename the temporary file: %s", path, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
done:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(real);
    free(t.p);
    return status;
}

/* Reads a whole regular file into a malloc'ed buffer. */
static int mlpc__read_file(const char *path, unsigned char **data, size_t *size)
{
    FILE *f;
    struct stat st;
    size_t got;
    if (!path || !*path)
        return mlpc__fail(MLPC_E_ARGUMENT, "load: no path given");
    f = fopen(path, "rb");
    if (!f)
        return mlpc__fail(MLPC_E_IO, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mlpc__fail(MLPC_E_IO, "cannot read %s: not a regular file", path);
    }
    *size = (size_t)st.st_size;
    *data = (unsigned char *)malloc(*size ? *size : 1);
    if (!*data) {
        fclose(f);
        return mlpc__fail(MLPC_E_NOMEM, "out of memory reading %s (%zu bytes)", path, *size);
    }
    got = fread(*data, 1, *size, f);
    fclose(f);
    if (got != *size) {
        free(*data);
        *data = NULL;
        return mlpc__fail(MLPC_E_IO, "cannot read %s: short read", path);
    }
    return MLPC_OK;
}
