# Statistics merging, shared with the block stage (_block.pyx), which summarises each
# block as it fills.
from libc.math cimport INFINITY, isnan
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t
from libc.string cimport memcpy

cdef enum:
    # how a block stage column holds a numeric signal's values
    V_BOOL = 0      # uint8 0/1
    V_INT32 = 1
    V_INT64 = 2
    V_FLOAT32 = 3
    V_FLOAT64 = 4
    SUMMARY_FIELDS = 10   # n, sum, min, max, first, last, tmin, tmax, tfirst, tlast


cdef inline void merge(int64_t* n, double* total, double* mn, int64_t* tmn, double* mx,
                       int64_t* tmx, double* f, int64_t* tf, double* l, int64_t* tl,
                       int64_t n2, double total2, double mn2, int64_t tmn2, double mx2,
                       int64_t tmx2, double f2, int64_t tf2, double l2,
                       int64_t tl2) noexcept nogil:
    """Merge the statistics of a second set of records (``*2``) into the first's."""
    n[0] += n2
    total[0] += total2
    if mn2 < mn[0] or (mn2 == mn[0] and tmn2 < tmn[0]):
        mn[0] = mn2
        tmn[0] = tmn2
    if mx2 > mx[0] or (mx2 == mx[0] and tmx2 < tmx[0]):
        mx[0] = mx2
        tmx[0] = tmx2
    if tf2 < tf[0] or (tf2 == tf[0] and f2 < f[0]):
        f[0] = f2
        tf[0] = tf2
    if tl2 > tl[0] or (tl2 == tl[0] and l2 > l[0]):
        l[0] = l2
        tl[0] = tl2


ctypedef struct Summary:
    # one signal's summary fields, as `_put` writes and `unpack` reads them and
    # `_overview.summary_dtype` lays them out: eight bytes each, no padding
    int64_t n
    double total, mn, mx, first, last
    int64_t tmn, tmx, tfirst, tlast


cdef inline Summary unpack(const char* fields) noexcept nogil:
    cdef Summary s
    memcpy(&s, fields, sizeof(Summary))
    return s


cdef inline double value_at(const char* data, int kind, Py_ssize_t i) noexcept nogil:
    if kind == V_FLOAT64:
        return (<const double*>data)[i]
    if kind == V_FLOAT32:
        return (<const float*>data)[i]
    if kind == V_INT64:
        return <double>(<const int64_t*>data)[i]
    if kind == V_INT32:
        return (<const int32_t*>data)[i]
    return 1.0 if (<const uint8_t*>data)[i] else 0.0


cdef inline void _put(char* out, int64_t cnt, double total, double mn, double mx, double f,
                      double l, int64_t tmn, int64_t tmx, int64_t tf, int64_t tl) noexcept nogil:
    cdef Summary s = Summary(cnt, total, mn, mx, f, l, tmn, tmx, tf, tl)
    memcpy(out, &s, sizeof(Summary))


ctypedef fused number:
    uint8_t
    int32_t
    int64_t
    float
    double


cdef inline void lane(double x, Py_ssize_t i, double* total, int64_t* cnt, double* mn,
                      Py_ssize_t* at_mn, double* mx, Py_ssize_t* at_mx) noexcept nogil:
    """One value into one lane of `summarise_in_order` (NaN counts nowhere and never wins
    a comparison; the first of equal values stays)."""
    if x == x:
        total[0] += x
        cnt[0] += 1
    if x < mn[0]:
        mn[0] = x
        at_mn[0] = i
    if x > mx[0]:
        mx[0] = x
        at_mx[0] = i


cdef inline void summarise_in_order(const number* xs, const int64_t* t, Py_ssize_t n,
                                    char* out) noexcept nogil:
    """`summarise_values` for values in time order, none null: one pass over two
    independent lanes (half the chain of dependent additions), then the first and the last
    from the ends. The first of equal minima (maxima) is the earliest."""
    cdef double s0 = 0, s1 = 0, m0 = INFINITY, m1 = INFINITY, M0 = -INFINITY, M1 = -INFINITY
    cdef int64_t c0 = 0, c1 = 0, cnt, tmn = INT64_MAX, tmx = INT64_MAX
    cdef int64_t tf = INT64_MAX, tl = INT64_MIN
    cdef double f = INFINITY, l = -INFINITY, x
    cdef Py_ssize_t i = 0, a, b, k0 = 0, k1 = 0, K0 = 0, K1 = 0
    while i + 2 <= n:
        lane(<double>xs[i], i, &s0, &c0, &m0, &k0, &M0, &K0)
        lane(<double>xs[i + 1], i + 1, &s1, &c1, &m1, &k1, &M1, &K1)
        i += 2
    if i < n:
        lane(<double>xs[i], i, &s0, &c0, &m0, &k0, &M0, &K0)
    cnt = c0 + c1
    if m1 < m0 or (m1 == m0 and k1 < k0):
        m0, k0 = m1, k1
    if M1 > M0 or (M1 == M0 and K1 < K0):
        M0, K0 = M1, K1
    if cnt:
        tmn, tmx = t[k0], t[K0]
        a = 0
        while <double>xs[a] != <double>xs[a]:
            a += 1
        f, tf = <double>xs[a], t[a]
        while a + 1 < n and t[a + 1] == tf:
            a += 1
            x = <double>xs[a]
            f = x if x < f else f
        b = n - 1
        while <double>xs[b] != <double>xs[b]:
            b -= 1
        l, tl = <double>xs[b], t[b]
        while b > 0 and t[b - 1] == tl:
            b -= 1
            x = <double>xs[b]
            l = x if x > l else l
    _put(out, cnt, s0 + s1, m0, M0, f, l, tmn, tmx, tf, tl)


cdef inline void summarise_values(const char* data, int kind, const uint8_t* null,
                                  const int64_t* t, Py_ssize_t n, bint in_order,
                                  char* out) noexcept nogil:
    """Write one signal's summary fields (as `_overview.summary_dtype` lays them out, 80
    bytes) for n values of a column (``null[i]`` 1 where value i is null; NULL: none is).
    NaN is left out, as nulls are. ``in_order``: times never decrease, so the first of
    equal values is the earliest, and a block with no null is summarised in lanes."""
    cdef int64_t cnt = 0, tmn = INT64_MAX, tmx = INT64_MAX
    cdef int64_t tf = INT64_MAX, tl = INT64_MIN
    cdef double total = 0, mn = INFINITY, mx = -INFINITY, f = INFINITY, l = -INFINITY, x
    cdef Py_ssize_t i
    if in_order and null == NULL:
        if kind == V_FLOAT64:
            summarise_in_order(<const double*>data, t, n, out)
        elif kind == V_FLOAT32:
            summarise_in_order(<const float*>data, t, n, out)
        elif kind == V_INT64:
            summarise_in_order(<const int64_t*>data, t, n, out)
        elif kind == V_INT32:
            summarise_in_order(<const int32_t*>data, t, n, out)
        else:
            summarise_in_order(<const uint8_t*>data, t, n, out)
        return
    for i in range(n):
        if null != NULL and null[i]:
            continue
        x = value_at(data, kind, i)
        if isnan(x):
            continue
        merge(&cnt, &total, &mn, &tmn, &mx, &tmx, &f, &tf, &l, &tl,
              1, x, x, t[i], x, t[i], x, t[i], x, t[i])
    _put(out, cnt, total, mn, mx, f, l, tmn, tmx, tf, tl)
