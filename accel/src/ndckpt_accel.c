/* ndckpt_accel: compiled shuffle and delta filters for ndckpt.filters (issue 15).
 *
 * Contract: the exact semantics of ndckpt/filters.py (its module docstring is the
 * definition). A buffer is cut into blocks of `block` bytes (the last one may be shorter);
 * in a block of L bytes with item size s (1..255), n = L / s items and body = n * s:
 *   shuffle:  out[j * n + i] = in[i * s + j]                    (0 <= i < n, 0 <= j < s)
 *   delta:    shuffle of the byte-wise difference of consecutive items of the block
 *             (the first item kept), i.e. a difference along every byte plane, mod 256
 *   tail:     bytes [body, L) are copied verbatim, for both kinds.
 * unfilter() is the exact inverse. Every byte pattern is valid input.
 *
 * The buffers come through the buffer protocol (no copies): src read-only, dst writable,
 * both C-contiguous, of equal length, not overlapping (ndckpt.filters checks this before
 * calling; the checks here only guard memory safety). The GIL is released while the
 * kernels run. Scratch: one block-sized buffer for delta, allocated per call and freed
 * before return; on allocation failure MemoryError is raised and dst is untouched.
 *
 * C99, plus GCC's generic vectors where the compiler is GCC (vector_size and __builtin_shuffle,
 * no intrinsics or target flags; vector element k is memory byte k): the unshuffle and the
 * byte-plane prefix sum of delta's inverse. Other compilers, or -DNDCKPT_ACCEL_NO_VECTOR, get
 * plain C versions with the same results: 8x8 byte transposes and SWAR sums on 64-bit words
 * whose byte k is memory byte k (load64/store64 are 8-byte memcpy moves on a known
 * little-endian target and assemble little-endian explicitly elsewhere), so no result
 * depends on the machine's byte order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ABI_VERSION 1

typedef unsigned char u8;

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline uint64_t load64(const u8 *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

static inline void store64(u8 *p, uint64_t x)
{
    memcpy(p, &x, 8);
}
#else
static inline uint64_t load64(const u8 *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline void store64(u8 *p, uint64_t x)
{
    p[0] = (u8)x; p[1] = (u8)(x >> 8); p[2] = (u8)(x >> 16); p[3] = (u8)(x >> 24);
    p[4] = (u8)(x >> 32); p[5] = (u8)(x >> 40); p[6] = (u8)(x >> 48); p[7] = (u8)(x >> 56);
}
#endif

/* GCC's generic vectors (vector_size and __builtin_shuffle; element k is memory byte k). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(NDCKPT_ACCEL_NO_VECTOR)
#define USE_VECTORS 1
typedef u8 v16 __attribute__((vector_size(16)));

static inline v16 load16(const u8 *p)
{
    v16 v;
    memcpy(&v, p, 16);
    return v;
}

/* Interleave the low (LO) or high (HI) halves of a and b in elements of 1, 2, 4 bytes. */
#define LO8(a, b) __builtin_shuffle(a, b, (v16){0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23})
#define HI8(a, b) __builtin_shuffle(a, b, (v16){8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31})
#define LO16(a, b) __builtin_shuffle(a, b, (v16){0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23})
#define HI16(a, b) __builtin_shuffle(a, b, (v16){8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31})
#define LO32(a, b) __builtin_shuffle(a, b, (v16){0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23})
#define HI32(a, b) __builtin_shuffle(a, b, (v16){8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31})
#else
#define USE_VECTORS 0
#endif

/* Swap the bits of a and b selected by m << k in a with those selected by m in b. */
#define SWAP(a, b, k, m)                          \
    do {                                          \
        uint64_t t_ = (((a) >> (k)) ^ (b)) & (m); \
        (b) ^= t_;                                \
        (a) ^= t_ << (k);                         \
    } while (0)

/* Transpose the 8x8 byte matrix with row r in w_r (byte c = M[r][c]) in place: afterwards
 * byte r of w_c is M[r][c]. */
#define TRANSPOSE8(w0, w1, w2, w3, w4, w5, w6, w7)  \
    do {                                              \
        SWAP(w0, w4, 32, 0x00000000FFFFFFFFull);      \
        SWAP(w1, w5, 32, 0x00000000FFFFFFFFull);      \
        SWAP(w2, w6, 32, 0x00000000FFFFFFFFull);      \
        SWAP(w3, w7, 32, 0x00000000FFFFFFFFull);      \
        SWAP(w0, w2, 16, 0x0000FFFF0000FFFFull);      \
        SWAP(w1, w3, 16, 0x0000FFFF0000FFFFull);      \
        SWAP(w4, w6, 16, 0x0000FFFF0000FFFFull);      \
        SWAP(w5, w7, 16, 0x0000FFFF0000FFFFull);      \
        SWAP(w0, w1, 8, 0x00FF00FF00FF00FFull);       \
        SWAP(w2, w3, 8, 0x00FF00FF00FF00FFull);       \
        SWAP(w4, w5, 8, 0x00FF00FF00FF00FFull);       \
        SWAP(w6, w7, 8, 0x00FF00FF00FF00FFull);       \
    } while (0)

#define HIGH 0x8080808080808080ull

/* Byte-wise a + b mod 256 in every byte of the words (no carry between bytes). */
static inline uint64_t add8(uint64_t a, uint64_t b)
{
    return ((a & ~HIGH) + (b & ~HIGH)) ^ ((a ^ b) & HIGH);
}

/* ---- shuffle / unshuffle of the n whole items of one block ------------------------------ */

static void shuf_4(const u8 *restrict in, u8 *restrict out, size_t n)
{
    for (size_t j = 0; j < 4; j++)
        for (size_t i = 0; i < n; i++) out[j * n + i] = in[i * 4 + j];
}

#if !USE_VECTORS
static void unshuf_4(const u8 *restrict in, u8 *restrict out, size_t n)
{
    size_t i0 = 0;
    for (; i0 + 16 <= n; i0 += 16)
        for (size_t i = 0; i < 16; i++)
            for (size_t j = 0; j < 4; j++) out[(i0 + i) * 4 + j] = in[j * n + i0 + i];
    for (size_t j = 0; j < 4; j++)
        for (size_t i = i0; i < n; i++) out[i * 4 + j] = in[j * n + i];
}
#endif

static void shuf_2(const u8 *restrict in, u8 *restrict out, size_t n)
{
    size_t i0 = 0;
    for (; i0 + 16 <= n; i0 += 16)
        for (size_t j = 0; j < 2; j++)
            for (size_t i = 0; i < 16; i++) out[j * n + i0 + i] = in[(i0 + i) * 2 + j];
    for (size_t j = 0; j < 2; j++)
        for (size_t i = i0; i < n; i++) out[j * n + i] = in[i * 2 + j];
}

#if !USE_VECTORS
/* Bytes 0..3 of x spread to bytes 0, 2, 4, 6. */
static inline uint64_t spread2(uint64_t x)
{
    x &= 0xFFFFFFFFull;
    x = (x | x << 16) & 0x0000FFFF0000FFFFull;
    return (x | x << 8) & 0x00FF00FF00FF00FFull;
}

static void unshuf_2(const u8 *restrict in, u8 *restrict out, size_t n)
{
    const u8 *p0 = in, *p1 = in + n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t a = load64(p0 + i), b = load64(p1 + i);
        store64(out + 2 * i, spread2(a) | spread2(b) << 8);
        store64(out + 2 * i + 8, spread2(a >> 32) | spread2(b >> 32) << 8);
    }
    for (; i < n; i++) {
        out[2 * i] = p0[i];
        out[2 * i + 1] = p1[i];
    }
}

#endif

/* s a multiple of 8: 8 items x 8 byte planes at a time through TRANSPOSE8. */
static inline void shuf_8k(const u8 *restrict in, u8 *restrict out, size_t n, size_t s)
{
    size_t whole = n & ~(size_t)7, i0;
    for (size_t g = 0; g < s; g += 8) /* 8 output planes at a time: few write streams */
        for (i0 = 0; i0 < whole; i0 += 8) {
            const u8 *p = in + i0 * s + g;
            uint64_t w0 = load64(p), w1 = load64(p + s), w2 = load64(p + 2 * s), w3 = load64(p + 3 * s);
            uint64_t w4 = load64(p + 4 * s), w5 = load64(p + 5 * s), w6 = load64(p + 6 * s), w7 = load64(p + 7 * s);
            TRANSPOSE8(w0, w1, w2, w3, w4, w5, w6, w7);
            u8 *q = out + g * n + i0;
            store64(q, w0), store64(q + n, w1), store64(q + 2 * n, w2), store64(q + 3 * n, w3);
            store64(q + 4 * n, w4), store64(q + 5 * n, w5), store64(q + 6 * n, w6), store64(q + 7 * n, w7);
        }
    for (size_t j = 0; j < s; j++)
        for (size_t i = whole; i < n; i++) out[j * n + i] = in[i * s + j];
}

/* The inverse of shuf_8k; with `delta` also the inverse of the plane differences: item i
 * becomes the byte-wise sum of items 0..i mod 256 (a prefix sum along every byte plane),
 * added while the transposed words are in registers. */
static inline void unshuf_8k(const u8 *restrict in, u8 *restrict out, size_t n, size_t s, int delta)
{
    size_t whole = n & ~(size_t)7, i0;
    for (size_t g = 0; g < s; g += 8) { /* 8 input planes at a time: few read streams */
        uint64_t acc = 0;
        for (i0 = 0; i0 < whole; i0 += 8) {
            const u8 *p = in + g * n + i0;
            uint64_t w0 = load64(p), w1 = load64(p + n), w2 = load64(p + 2 * n), w3 = load64(p + 3 * n);
            uint64_t w4 = load64(p + 4 * n), w5 = load64(p + 5 * n), w6 = load64(p + 6 * n), w7 = load64(p + 7 * n);
            TRANSPOSE8(w0, w1, w2, w3, w4, w5, w6, w7);
            if (delta) { /* running byte-wise sum along the items */
                w0 = add8(w0, acc), w1 = add8(w1, w0), w2 = add8(w2, w1), w3 = add8(w3, w2);
                w4 = add8(w4, w3), w5 = add8(w5, w4), w6 = add8(w6, w5), w7 = add8(w7, w6);
                acc = w7;
            }
            u8 *q = out + i0 * s + g;
            store64(q, w0), store64(q + s, w1), store64(q + 2 * s, w2), store64(q + 3 * s, w3);
            store64(q + 4 * s, w4), store64(q + 5 * s, w5), store64(q + 6 * s, w6), store64(q + 7 * s, w7);
        }
        for (size_t i = whole; i < n; i++) { /* the last n % 8 items */
            uint64_t w = 0;
            for (int r = 7; r >= 0; r--) w = w << 8 | in[(g + (size_t)r) * n + i];
            if (delta) acc = w = add8(acc, w);
            store64(out + i * s + g, w);
        }
    }
}

/* Any s: 8 items at a time, each byte plane's 8 bytes gathered into (or scattered from) one word. */
#if USE_VECTORS
/* Unshuffle 16 items at a time by interleaving byte planes: planes (j, j+1) in byte pairs, then
 * pairs of pairs, ...: log2(s) rounds of shuffles per 16 items of each plane. */
static void vunshuf_2(const u8 *restrict in, u8 *restrict out, size_t n)
{
    size_t whole = n & ~(size_t)15;
    for (size_t i = 0; i < whole; i += 16) {
        v16 a = load16(in + i), b = load16(in + n + i);
        v16 lo = LO8(a, b), hi = HI8(a, b);
        memcpy(out + 2 * i, &lo, 16);
        memcpy(out + 2 * i + 16, &hi, 16);
    }
    for (size_t i = whole; i < n; i++) out[2 * i] = in[i], out[2 * i + 1] = in[n + i];
}

static void vunshuf_4(const u8 *restrict in, u8 *restrict out, size_t n)
{
    size_t whole = n & ~(size_t)15;
    for (size_t i = 0; i < whole; i += 16) {
        v16 a = load16(in + i), b = load16(in + n + i), c = load16(in + 2 * n + i), d = load16(in + 3 * n + i);
        v16 abl = LO8(a, b), abh = HI8(a, b), cdl = LO8(c, d), cdh = HI8(c, d);
        v16 o[4] = {LO16(abl, cdl), HI16(abl, cdl), LO16(abh, cdh), HI16(abh, cdh)};
        memcpy(out + 4 * i, o, 64);
    }
    for (size_t j = 0; j < 4; j++)
        for (size_t i = whole; i < n; i++) out[i * 4 + j] = in[j * n + i];
}

/* s a multiple of 8: 8 planes at a time; each output vector holds 8 bytes of two items. */
static inline void vunshuf_8k(const u8 *restrict in, u8 *restrict out, size_t n, size_t s)
{
    size_t whole = n & ~(size_t)15;
    for (size_t g = 0; g < s; g += 8)
        for (size_t i = 0; i < whole; i += 16) {
            const u8 *p = in + g * n + i;
            v16 p0 = load16(p), p1 = load16(p + n), p2 = load16(p + 2 * n), p3 = load16(p + 3 * n);
            v16 p4 = load16(p + 4 * n), p5 = load16(p + 5 * n), p6 = load16(p + 6 * n), p7 = load16(p + 7 * n);
            v16 a0 = LO8(p0, p1), a1 = HI8(p0, p1), a2 = LO8(p2, p3), a3 = HI8(p2, p3);
            v16 a4 = LO8(p4, p5), a5 = HI8(p4, p5), a6 = LO8(p6, p7), a7 = HI8(p6, p7);
            /* bytes 0-3 (b0..b3) and 4-7 (b4..b7) of items 0-3, 4-7, 8-11, 12-15 */
            v16 b0 = LO16(a0, a2), b1 = HI16(a0, a2), b2 = LO16(a1, a3), b3 = HI16(a1, a3);
            v16 b4 = LO16(a4, a6), b5 = HI16(a4, a6), b6 = LO16(a5, a7), b7 = HI16(a5, a7);
            v16 o[8] = {LO32(b0, b4), HI32(b0, b4), LO32(b1, b5), HI32(b1, b5),
                        LO32(b2, b6), HI32(b2, b6), LO32(b3, b7), HI32(b3, b7)}; /* items 2k, 2k+1 */
            if (s == 8) {
                memcpy(out + i * 8, o, 128);
            } else {
                const u8 *ob = (const u8 *)o;
                for (size_t k = 0; k < 16; k++) memcpy(out + (i + k) * s + g, ob + 8 * k, 8);
            }
        }
    for (size_t j = 0; j < s; j++)
        for (size_t i = whole; i < n; i++) out[i * s + j] = in[j * n + i];
}
#endif

static void shuf_any(const u8 *restrict in, u8 *restrict out, size_t n, size_t s)
{
    size_t whole = n & ~(size_t)7;
    for (size_t i0 = 0; i0 < whole; i0 += 8) {
        const u8 *p = in + i0 * s;
        for (size_t j = 0; j < s; j++) {
            uint64_t w = (uint64_t)p[j] | (uint64_t)p[s + j] << 8 | (uint64_t)p[2 * s + j] << 16 |
                         (uint64_t)p[3 * s + j] << 24 | (uint64_t)p[4 * s + j] << 32 | (uint64_t)p[5 * s + j] << 40 |
                         (uint64_t)p[6 * s + j] << 48 | (uint64_t)p[7 * s + j] << 56;
            store64(out + j * n + i0, w);
        }
    }
    for (size_t j = 0; j < s; j++)
        for (size_t i = whole; i < n; i++) out[j * n + i] = in[i * s + j];
}

static void unshuf_any(const u8 *restrict in, u8 *restrict out, size_t n, size_t s)
{
    size_t whole = n & ~(size_t)7;
    for (size_t i0 = 0; i0 < whole; i0 += 8) {
        u8 *q = out + i0 * s;
        for (size_t j = 0; j < s; j++) {
            uint64_t w = load64(in + j * n + i0);
            q[j] = (u8)w, q[s + j] = (u8)(w >> 8), q[2 * s + j] = (u8)(w >> 16), q[3 * s + j] = (u8)(w >> 24);
            q[4 * s + j] = (u8)(w >> 32), q[5 * s + j] = (u8)(w >> 40), q[6 * s + j] = (u8)(w >> 48);
            q[7 * s + j] = (u8)(w >> 56);
        }
    }
    for (size_t j = 0; j < s; j++)
        for (size_t i = whole; i < n; i++) out[i * s + j] = in[j * n + i];
}

static void shuffle(const u8 *restrict in, u8 *restrict out, size_t n, size_t s)
{
    if (s == 1) memcpy(out, in, n);
    else if (s == 2) shuf_2(in, out, n);
    else if (s == 4) shuf_4(in, out, n);
    else if (s == 8) shuf_8k(in, out, n, 8);
    else if (s == 16) shuf_8k(in, out, n, 16);
    else if (s % 8 == 0) shuf_8k(in, out, n, s);
    else shuf_any(in, out, n, s);
}

static void unshuffle(const u8 *restrict in, u8 *restrict out, size_t n, size_t s)
{
    if (s == 1) memcpy(out, in, n);
#if USE_VECTORS
    else if (s == 2) vunshuf_2(in, out, n);
    else if (s == 4) vunshuf_4(in, out, n);
    else if (s == 8) vunshuf_8k(in, out, n, 8);
    else if (s == 16) vunshuf_8k(in, out, n, 16);
    else if (s % 8 == 0) vunshuf_8k(in, out, n, s);
#else
    else if (s == 2) unshuf_2(in, out, n);
    else if (s == 4) unshuf_4(in, out, n);
    else if (s == 8) unshuf_8k(in, out, n, 8, 0);
    else if (s == 16) unshuf_8k(in, out, n, 16, 0);
    else if (s % 8 == 0) unshuf_8k(in, out, n, s, 0);
#endif
    else unshuf_any(in, out, n, s);
}

/* ---- delta: difference of consecutive items, and its inverse per byte plane ------------- */

/* out[k] = in[k] - in[k - s] for k >= s, out[k] = in[k] for k < s (k < len). */
static void item_diff(const u8 *restrict in, u8 *restrict out, size_t len, size_t s)
{
    memcpy(out, in, s < len ? s : len);
    for (size_t k = s; k < len; k++) out[k] = (u8)(in[k] - in[k - s]);
}

#define EVEN 0x00FF00FF00FF00FFull
#define LANES 0x0001000100010001ull

/* out[i] = (in[0] + ... + in[i]) mod 256 for one byte plane of n bytes.
 *
 * With GCC's vector extensions (generic vectors and __builtin_shuffle, no intrinsics; element
 * k of a vector is memory byte k on every target): 16 bytes per step, a log-step prefix sum of
 * byte shifts and byte adds, plus the previous step's last byte broadcast. Elsewhere, eight
 * bytes per step in a 64-bit word: its even and odd bytes in 16-bit lanes, multiplied by
 * LANES, hold their prefix sums within the word (every lane stays below 2**16); the carry
 * between words is the running total mod 256. */
#if USE_VECTORS

static void plane_prefix(const u8 *restrict in, u8 *restrict out, size_t n)
{
    const v16 z = {0};
    v16 carry = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16 v;
        memcpy(&v, in + i, 16);
        /* element k of shuffle(z, v, {16 - d + k}) is v[k - d] (zero for k < d) */
        v += __builtin_shuffle(z, v, (v16){15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30});
        v += __builtin_shuffle(z, v, (v16){14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29});
        v += __builtin_shuffle(z, v, (v16){12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27});
        v += __builtin_shuffle(z, v, (v16){8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23});
        v += carry;
        memcpy(out + i, &v, 16);
        carry = __builtin_shuffle(v, (v16){15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15});
    }
    u8 acc = carry[0];
    for (; i < n; i++) {
        acc = (u8)(acc + in[i]);
        out[i] = acc;
    }
}
#else
static void plane_prefix(const u8 *restrict in, u8 *restrict out, size_t n)
{
    uint64_t carry = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = load64(in + i);
        uint64_t e = (x & EVEN) * LANES, o = ((x >> 8) & EVEN) * LANES, c = carry * LANES;
        uint64_t lo = (e + (o << 16) + c) & EVEN, hi = (e + o + c) & EVEN;
        store64(out + i, lo | hi << 8);
        carry = (carry + ((e + o) >> 48)) & 0xFF;
    }
    u8 acc = (u8)carry;
    for (; i < n; i++) {
        acc = (u8)(acc + in[i]);
        out[i] = acc;
    }
}
#endif

/* ---- blocks ----------------------------------------------------------------------------- */

static void filter_buf(int delta, const u8 *in, u8 *out, size_t len, size_t s, size_t block, u8 *scratch)
{
    for (size_t a = 0; a < len; a += block) {
        size_t L = len - a < block ? len - a : block;
        size_t n = L / s, body = n * s;
        const u8 *src = in + a;
        memcpy(out + a + body, src + body, L - body);
        if (!n) continue;
        if (delta) {
            item_diff(src, scratch, body, s);
            src = scratch;
        }
        shuffle(src, out + a, n, s);
    }
}

static void unfilter_buf(int delta, const u8 *in, u8 *out, size_t len, size_t s, size_t block, u8 *scratch)
{
    for (size_t a = 0; a < len; a += block) {
        size_t L = len - a < block ? len - a : block;
        size_t n = L / s, body = n * s;
        const u8 *src = in + a;
        memcpy(out + a + body, src + body, L - body);
        if (!n) continue;
        if (delta && s % 8 == 0 && !USE_VECTORS) {
            /* unshuffle and prefix sums in one pass (the vector prefix sum + unshuffle is faster) */
            if (s == 8) unshuf_8k(src, out + a, n, 8, 1);
            else if (s == 16) unshuf_8k(src, out + a, n, 16, 1);
            else unshuf_8k(src, out + a, n, s, 1);
            continue;
        }
        if (delta) {
            for (size_t j = 0; j < s; j++) plane_prefix(src + j * n, scratch + j * n, n);
            src = scratch;
        }
        unshuffle(src, out + a, n, s);
    }
}

/* ---- Python ----------------------------------------------------------------------------- */

static PyObject *run(PyObject *args, int inverse)
{
    int kind, itemsize;
    Py_ssize_t block;
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "iy*w*in", &kind, &src, &dst, &itemsize, &block)) return NULL;
    PyObject *result = NULL;
    u8 *scratch = NULL;
    if (kind != 0 && kind != 1) {
        PyErr_Format(PyExc_ValueError, "kind must be 0 (shuffle) or 1 (delta), got %d", kind);
    } else if (itemsize < 1 || itemsize > 255) {
        PyErr_Format(PyExc_ValueError, "item size must be in [1, 255], got %d", itemsize);
    } else if (block < 1) {
        PyErr_Format(PyExc_ValueError, "block must be positive, got %zd", block);
    } else if (src.len != dst.len) {
        PyErr_Format(PyExc_ValueError, "src has %zd bytes, dst %zd; they must be equal", src.len, dst.len);
    } else if (src.len && (const u8 *)src.buf < (u8 *)dst.buf + dst.len &&
               (u8 *)dst.buf < (const u8 *)src.buf + src.len) {
        PyErr_SetString(PyExc_ValueError, "src and dst overlap");
    } else {
        size_t len = (size_t)src.len, blk = (size_t)block;
        size_t need = kind == 1 ? (len < blk ? len : blk) : 0;
        if (need && !(scratch = PyMem_RawMalloc(need))) {
            PyErr_NoMemory();
        } else {
            Py_BEGIN_ALLOW_THREADS
            if (inverse) unfilter_buf(kind, src.buf, dst.buf, len, (size_t)itemsize, blk, scratch);
            else filter_buf(kind, src.buf, dst.buf, len, (size_t)itemsize, blk, scratch);
            Py_END_ALLOW_THREADS
            PyMem_RawFree(scratch);
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyObject *py_filter(PyObject *self, PyObject *args)
{
    (void)self;
    return run(args, 0);
}

static PyObject *py_unfilter(PyObject *self, PyObject *args)
{
    (void)self;
    return run(args, 1);
}

static PyMethodDef methods[] = {
    {"filter", py_filter, METH_VARARGS,
     "filter(kind, src, dst, itemsize, block): write the filter (kind 0 shuffle, 1 delta) of src into dst."},
    {"unfilter", py_unfilter, METH_VARARGS,
     "unfilter(kind, src, dst, itemsize, block): write the inverse filter of src into dst."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ndckpt_accel",
    "Compiled shuffle and delta filters for ndckpt.filters (byte-identical to its numpy code).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_ndckpt_accel(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI_VERSION", ABI_VERSION) < 0) Py_CLEAR(m);
    return m;
}
