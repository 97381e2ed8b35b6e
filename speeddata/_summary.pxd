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
    memcpy(out, &cnt, 8)
    memcpy(out + 8, &total, 8)
    memcpy(out + 16, &mn, 8)
    memcpy(out + 24, &mx, 8)
    memcpy(out + 32, &f, 8)
    memcpy(out + 40, &l, 8)
    memcpy(out + 48, &tmn, 8)
    memcpy(out + 56, &tmx, 8)
    memcpy(out + 64, &tf, 8)
    memcpy(out + 72, &tl, 8)


cdef inline void summarise_values(const char* data, int kind, const uint8_t* null,
                                  const int64_t* t, Py_ssize_t n, bint in_order,
                                  char* out) noexcept nogil:
    """Write one signal's summary fields (as `_overview.summary_dtype` lays them out, 80
    bytes) for n values of a column (``null[i]`` 1 where value i is null; NULL: none is).
    NaN is left out, as nulls are. ``in_order``: times never decrease, so the first of
    equal values is the earliest and plain comparisons do what `merge` does."""
    cdef int64_t cnt = 0, tmn = INT64_MAX, tmx = INT64_MAX
    cdef int64_t tf = INT64_MAX, tl = INT64_MIN
    cdef double total = 0, mn = INFINITY, mx = -INFINITY, f = INFINITY, l = -INFINITY, x
    cdef Py_ssize_t i, i0 = 0
    cdef const double* xs = <const double*>data
    if in_order and kind == V_FLOAT64 and null == NULL:
        # the usual block: doubles, none null, in time order
        while i0 < n and isnan(xs[i0]):
            i0 += 1
        if i0 < n:
            mn = mx = f = l = xs[i0]
            tmn = tmx = tf = tl = t[i0]
            for i in range(i0, n):
                x = xs[i]
                if isnan(x):
                    continue
                cnt += 1
                total += x
                if x < mn:
                    mn = x
                    tmn = t[i]
                elif x > mx:
                    mx = x
                    tmx = t[i]
                if t[i] == tf and x < f:
                    f = x
                if t[i] > tl:
                    l = x
                    tl = t[i]
                elif x > l:         # times never decrease: here t[i] == tl
                    l = x
        _put(out, cnt, total, mn, mx, f, l, tmn, tmx, tf, tl)
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
