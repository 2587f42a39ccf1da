/* mlpc ahead-of-time runtime support, part 1: error messages, aligned buffers, SHA-256 and a
 * bounded JSON reader (part 2, safetensors.c, reads and writes checkpoints with them).
 *
 * Both files are pasted at the top of every generated library's glue source; everything in them
 * is static, so several exported models can live in one process. They need only libc. */

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
    int role;              /* MLPC_PARAM, MLPC_STATE or MLPC_HYPER */
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

