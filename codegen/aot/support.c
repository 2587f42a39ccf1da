/* mlpc ahead-of-time runtime support: error messages, aligned buffers, SHA-256, a bounded JSON
 * reader and safetensors read/write with the mlpc checkpoint checksum.
 *
 * This file is pasted at the top of every generated library's glue source; everything in it is
 * static, so several exported models can live in one process. It needs only libc. */

#define MLPC__MAXDIM 8
#define MLPC__MAX_HEADER (100u * 1024u * 1024u)
#define MLPC__MAX_NAME 256
#define MLPC__MAX_TENSORS 65536
#define MLPC__MAX_DEPTH 64

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mlpc exported libraries assume a little-endian host (safetensors is little-endian)"
#endif

/* One parameter or optimizer-state buffer of the model. */
typedef struct mlpc__buf {
    const char *name;      /* "0.weight" */
    const char *key;       /* "param/0.weight", the tensor's name in a checkpoint */
    int role;              /* MLPC_PARAM or MLPC_STATE */
    int dtype;             /* MLPC_F32 or MLPC_I32 */
    int ndim;
    const int64_t *shape;
    int64_t numel;
} mlpc__buf;

/* ---- errors ------------------------------------------------------------------------------- */

static _Thread_local char mlpc__msg[1024];

static int mlpc__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mlpc__msg, sizeof mlpc__msg, fmt, ap);
    va_end(ap);
    return code;
}

static void mlpc__clear_error(void) { mlpc__msg[0] = '\0'; }

/* ---- aligned allocation --------------------------------------------------------------------- */

static void *mlpc__alloc(size_t nbytes)
{
    void *p = NULL;
    if (nbytes == 0)
        nbytes = 64;
    nbytes = (nbytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, nbytes) != 0)
        return NULL;
    memset(p, 0, nbytes);
    return p;
}

static size_t mlpc__elsize(int dtype)
{
    (void)dtype; /* f32 and i32 */
    return 4;
}

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------- */

typedef struct mlpc__sha256 {
    uint32_t h[8];
    uint64_t length;
    unsigned char block[64];
    size_t used;
} mlpc__sha256;

static const uint32_t mlpc__k256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

static uint32_t mlpc__ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void mlpc__sha256_block(mlpc__sha256 *s, const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, h;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = mlpc__ror(w[i - 15], 7) ^ mlpc__ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = mlpc__ror(w[i - 2], 17) ^ mlpc__ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
    e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (i = 0; i < 64; i++) {
        uint32_t t1 = h + (mlpc__ror(e, 6) ^ mlpc__ror(e, 11) ^ mlpc__ror(e, 25)) + ((e & f) ^ (~e & g))
                      + mlpc__k256[i] + w[i];
        uint32_t t2 = (mlpc__ror(a, 2) ^ mlpc__ror(a, 13) ^ mlpc__ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void mlpc__sha256_init(mlpc__sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, h0, sizeof h0);
    s->length = 0;
    s->used = 0;
}

static void mlpc__sha256_update(mlpc__sha256 *s, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    s->length += (uint64_t)n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take; p += take; n -= take;
        if (s->used < 64)
            return;
        mlpc__sha256_block(s, s->block);
        s->used = 0;
    }
    while (n >= 64) {
        mlpc__sha256_block(s, p);
        p += 64; n -= 64;
    }
    memcpy(s->block, p, n);
    s->used = n;
}

static void mlpc__sha256_hex(mlpc__sha256 *s, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t bits = s->length * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    int i;
    mlpc__sha256_update(s, &pad, 1);
    while (s->used != 56)
        mlpc__sha256_update(s, &zero, 1);
    for (i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    mlpc__sha256_update(s, len, 8);
    for (i = 0; i < 32; i++) {
        unsigned char byte = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
    out[64] = '\0';
}

/* The checkpoint checksum of mlpc/checkpoint.py: over tensors sorted by name, the name, numpy's
 * dtype name, Python's repr of the shape tuple, and the raw little-endian bytes. The shape is that
 * of np.ascontiguousarray, which makes a scalar [1]. */
static void mlpc__checksum_tensor(mlpc__sha256 *s, const char *name, const char *np_dtype, int ndim,
                                  const int64_t *shape, const void *data, size_t nbytes)
{
    static const int64_t one[1] = {1};
    char repr[32 * MLPC__MAXDIM + 4];
    size_t at = 0;
    int i;
    if (ndim == 0) {
        ndim = 1;
        shape = one;
    }
    repr[at++] = '(';
    for (i = 0; i < ndim; i++)
        at += (size_t)snprintf(repr + at, sizeof repr - at, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (ndim == 1)
        repr[at++] = ',';
    repr[at++] = ')';
    mlpc__sha256_update(s, name, strlen(name));
    mlpc__sha256_update(s, np_dtype, strlen(np_dtype));
    mlpc__sha256_update(s, repr, at);
    mlpc__sha256_update(s, data, nbytes);
}

/* ---- a bounded JSON reader (enough for safetensors headers) --------------------------------- */

typedef struct mlpc__json {
    const char *p, *end;
} mlpc__json;

static void mlpc__ws(mlpc__json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int mlpc__eat(mlpc__json *j, char c)
{
    mlpc__ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int mlpc__hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Parses a JSON string into out (NUL-terminated, at most cap-1 bytes); out may be NULL to skip.
 * Returns 1, or 0 on malformed input or when the string does not fit. */
static int mlpc__string(mlpc__json *j, char *out, size_t cap)
{
    size_t n = 0;
    mlpc__ws(j);
    if (j->p >= j->end || *j->p != '"')
        return 0;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        unsigned cp;
        char utf8[4];
        size_t len = 1, k;
        if (c == '"') {
            if (out) out[n] = '\0';
            return 1;
        }
        if (c < 0x20)
            return 0;
        utf8[0] = (char)c;
        if (c == '\\') {
            if (j->p >= j->end)
                return 0;
            c = (unsigned char)*j->p++;
            switch (c) {
            case '"': case '\\': case '/': utf8[0] = (char)c; break;
            case 'b': utf8[0] = '\b'; break;
            case 'f': utf8[0] = '\f'; break;
            case 'n': utf8[0] = '\n'; break;
            case 'r': utf8[0] = '\r'; break;
            case 't': utf8[0] = '\t'; break;
            case 'u':
                if (j->end - j->p < 4 || !mlpc__hex4(j->p, &cp))
                    return 0;
                j->p += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    unsigned lo;
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !mlpc__hex4(j->p + 2, &lo)
                        || lo < 0xDC00 || lo >= 0xE000)
                        return 0;
                    j->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return 0;
                }
                if (cp < 0x80) {
                    utf8[0] = (char)cp;
                } else if (cp < 0x800) {
                    utf8[0] = (char)(0xC0 | (cp >> 6)); utf8[1] = (char)(0x80 | (cp & 63)); len = 2;
                } else if (cp < 0x10000) {
                    utf8[0] = (char)(0xE0 | (cp >> 12)); utf8[1] = (char)(0x80 | ((cp >> 6) & 63));
                    utf8[2] = (char)(0x80 | (cp & 63)); len = 3;
                } else {
                    utf8[0] = (char)(0xF0 | (cp >> 18)); utf8[1] = (char)(0x80 | ((cp >> 12) & 63));
                    utf8[2] = (char)(0x80 | ((cp >> 6) & 63)); utf8[3] = (char)(0x80 | (cp & 63)); len = 4;
                }
                break;
            default:
                return 0;
            }
        }
        if (out) {
            if (n + len >= cap)
                return 0;
            for (k = 0; k < len; k++)
                out[n++] = utf8[k];
        }
    }
    return 0;
}

static int mlpc__uint(mlpc__json *j, uint64_t *out)
{
    uint64_t v = 0;
    int digits = 0;
    mlpc__ws(j);
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        j->p++;
        digits++;
    }
    if (!digits || (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')))
        return 0;
    *out = v;
    return 1;
}

static int mlpc__skip(mlpc__json *j, int depth)
{
    mlpc__ws(j);
    if (depth > MLPC__MAX_DEPTH || j->p >= j->end)
        return 0;
    if (*j->p == '"')
        return mlpc__string(j, NULL, 0);
    if (*j->p == '{' || *j->p == '[') {
        char close = *j->p == '{' ? '}' : ']';
        int object = close == '}';
        j->p++;
        if (mlpc__eat(j, close))
            return 1;
        for (;;) {
            if (object && (!mlpc__string(j, NULL, 0) || !mlpc__eat(j, ':')))
                return 0;
            if (!mlpc__skip(j, depth + 1))
                return 0;
            if (mlpc__eat(j, close))
                return 1;
            if (!mlpc__eat(j, ','))
                return 0;
        }
    }
    {
        const char *start = j->p;
        while (j->p < j->end && (strchr("+-.eE", *j->p) || (*j->p >= '0' && *j->p <= '9')
                                 || (*j->p >= 'a' && *j->p <= 'z')))
            j->p++;
        return j->p > start;
    }
}

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
 * shapes. Tensors named state/... are ignored when skip_state (inference-only libraries). */
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
            if (skip_state && !strncmp(e->name, "state/", 6))
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
        if (!found[b]) {
            status = mlpc__fail(MLPC_E_MISMATCH, "%s lacks tensor '%s' needed by the model", what, bufs[b].key);
            goto done;
        }
    for (b = 0; b < nbuf; b++) {
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
 * is written to a temporary name in the same folder, synced, and renamed over `path`. */
static int mlpc__st_write(const char *path, const mlpc__buf *bufs, int nbuf, void *const *src,
                          const int *sorted, const char *meta_json, int64_t steps)
{
    mlpc__text t = {NULL, 0, 0, 0};
    mlpc__sha256 s;
    char sum[65], *tmp = NULL;
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
