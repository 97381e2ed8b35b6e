# cython: language_level=3
"""Avro binary records <-> columns, driven by a flat plan compiled once per schema.

One parse routine serves validation (no outputs) and decoding (columns given): the ingest
hot path and the store's reader run the same bounds-checked code, which never reads past
the buffer and reports why and where a datagram is bad.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_DecodeUTF8
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint64_t, uintptr_t
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.string cimport memcmp, memcpy, memset

import numpy as np

from .errors import DecodeError

cdef enum:
    K_NULL = 0
    K_BOOLEAN = 1
    K_INT = 2
    K_LONG = 3
    K_FLOAT = 4
    K_DOUBLE = 5
    K_BYTES = 6
    K_STRING = 7
    K_ENUM = 8
    K_FIXED = 9
    K_UNION = 10

# The op kinds as Python sees them (speeddata.schema defines the same; a test compares).
OP_KINDS = {"NULL": K_NULL, "BOOLEAN": K_BOOLEAN, "INT": K_INT, "LONG": K_LONG,
            "FLOAT": K_FLOAT, "DOUBLE": K_DOUBLE, "BYTES": K_BYTES, "STRING": K_STRING,
            "ENUM": K_ENUM, "FIXED": K_FIXED, "UNION": K_UNION}

# Indexed by the R_* codes of _codec.pxd (a test checks that they agree).
REASONS = ("ok", "empty", "truncated", "bad_varint", "negative_length", "bad_union_index",
           "bad_enum_index", "bad_boolean", "bad_utf8", "too_many_records", "no_memory",
           "time_out_of_range")
REASON_CODES = {"ok": R_OK, "empty": R_EMPTY, "truncated": R_TRUNCATED,
                "bad_varint": R_BAD_VARINT, "negative_length": R_NEGATIVE_LENGTH,
                "bad_union_index": R_BAD_UNION, "bad_enum_index": R_BAD_ENUM,
                "bad_boolean": R_BAD_BOOLEAN, "bad_utf8": R_BAD_UTF8,
                "too_many_records": R_TOO_MANY, "no_memory": R_NO_MEMORY,
                "time_out_of_range": R_TIME_RANGE}
REASON_TEXT = {
    "empty": "empty datagram",
    "truncated": "record ends past the end of the data",
    "bad_varint": "varint overlong, longer than 10 bytes or out of range for its type",
    "negative_length": "negative string/bytes length",
    "bad_union_index": "union branch index out of range",
    "bad_enum_index": "enum symbol index out of range",
    "bad_boolean": "boolean byte other than 0 or 1",
    "bad_utf8": "string is not valid UTF-8",
    "too_many_records": "more records than the caller allows",
    "no_memory": "no memory left to hold the records",
    "time_out_of_range": "time field beyond what int64 nanoseconds hold (before 1677 or after 2262)",
}


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil


cdef inline uint64_t seven_bit_groups(uint64_t w) noexcept nogil:
    """The low seven bits of each of w's eight bytes, packed (little-endian varint bytes)."""
    return ((w & 0x7f) | ((w >> 1) & (<uint64_t>0x7f << 7)) | ((w >> 2) & (<uint64_t>0x7f << 14))
            | ((w >> 3) & (<uint64_t>0x7f << 21)) | ((w >> 4) & (<uint64_t>0x7f << 28))
            | ((w >> 5) & (<uint64_t>0x7f << 35)) | ((w >> 6) & (<uint64_t>0x7f << 42))
            | ((w >> 7) & (<uint64_t>0x7f << 49)))


cdef inline Py_ssize_t read_long(const uint8_t* buf, Py_ssize_t n, Py_ssize_t pos,
                                 int64_t* out, int* reason) noexcept nogil:
    """An Avro long at buf[pos]: the position after it, or -1 with reason (truncated,
    overlong, or past 64 bits). Eight bytes are read at once where the buffer allows: a time
    in nanoseconds takes nine bytes, and a byte at a time costs most of a record's parse."""
    cdef uint64_t w, stops, acc
    cdef uint8_t b
    cdef int size
    if pos + 10 <= n:
        memcpy(&w, buf + pos, 8)          # Avro is little-endian, as this machine
        stops = ~w & <uint64_t>0x8080808080808080
        if stops:
            size = (__builtin_ctzll(stops) >> 3) + 1
            if size < 8:
                w &= (<uint64_t>1 << (8 * size)) - 1
            if size > 1 and (w >> (8 * size - 8)) == 0:
                reason[0] = R_BAD_VARINT         # overlong: a zero last byte adds nothing
                return -1
            acc = seven_bit_groups(w)
            pos += size
        else:
            acc = seven_bit_groups(w)
            b = buf[pos + 8]
            if b < 0x80:
                if b == 0:
                    reason[0] = R_BAD_VARINT
                    return -1
                acc |= <uint64_t>b << 56
                pos += 9
            else:
                acc |= <uint64_t>(b & 0x7f) << 56
                if buf[pos + 9] != 1:            # bit 63, and nothing past it
                    reason[0] = R_BAD_VARINT
                    return -1
                acc |= <uint64_t>1 << 63
                pos += 10
        out[0] = <int64_t>((acc >> 1) ^ (0 - (acc & 1)))
        return pos
    return read_long_tail(buf, n, pos, out, reason)


cdef inline Py_ssize_t read_long_tail(const uint8_t* buf, Py_ssize_t n, Py_ssize_t pos,
                                      int64_t* out, int* reason) noexcept nogil:
    """`read_long` a byte at a time, near the end of the buffer."""
    cdef uint64_t acc = 0
    cdef int shift = 0
    cdef uint8_t b
    while True:
        if pos >= n:
            reason[0] = R_TRUNCATED
            return -1
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:
            reason[0] = R_BAD_VARINT
            return -1
        acc |= (<uint64_t>(b & 0x7f)) << shift
        if not (b & 0x80):
            if b == 0 and shift > 0:   # overlong: a zero continuation byte adds nothing
                reason[0] = R_BAD_VARINT
                return -1
            break
        shift += 7
    out[0] = <int64_t>((acc >> 1) ^ (0 - (acc & 1)))
    return pos


cdef inline bint utf8_ok(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Strict UTF-8, as Python's decoder: no overlongs, no surrogates, nothing past U+10FFFF."""
    cdef Py_ssize_t i = 0, need, k
    cdef uint8_t c, c1
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        need = 1 if c < 0xE0 else (2 if c < 0xF0 else 3)
        if i + need >= n:
            return False
        c1 = s[i + 1]
        if c1 < 0x80 or c1 > 0xBF:
            return False
        if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F) or \
           (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
            return False
        for k in range(2, need + 1):
            if s[i + k] < 0x80 or s[i + k] > 0xBF:
                return False
        i += need + 1
    return True


cdef inline void mark_null(Op* ops, int first, int last, ColOut* cols, Py_ssize_t row) noexcept nogil:
    cdef int j
    cdef ColOut* c
    cdef int64_t* pair
    for j in range(first, last):
        if ops[j].col < 0 or cols[ops[j].col].data == NULL:
            continue
        c = &cols[ops[j].col]
        memset(c.data + row * c.itemsize, 0, c.itemsize)
        if ops[j].kind == K_STRING or ops[j].kind == K_BYTES or ops[j].kind == K_FIXED:
            pair = <int64_t*>(c.data + row * c.itemsize)
            pair[1] = -1
        if c.mask != NULL:
            c.mask[row] = 1


cdef class Plan:
    """A channel schema compiled for the codec.

    Parameters
    ----------
    schema : speeddata.schema.ChannelSchema
        The schema whose records this plan reads.
    wire : bool
        Plan for what devices send: for a channel stamped with receive time, the records
        without the leading time field (times then read as 0).
    """

    def __cinit__(self, schema, bint wire=False):
        ops = schema.ops
        self.time_op = schema.time_op
        self.time_scale = schema.time_scale
        # times in the schema's unit that still fit int64 once scaled to ns
        self.time_max = INT64_MAX // self.time_scale
        self.time_min = -(INT64_MAX // self.time_scale) - (1 if self.time_scale == 1 else 0)
        if wire and schema.stamped:
            ops = ops[1:]
            self.time_op = -1
        self.schema = schema
        self.nops = len(ops)
        self.ncols = len(schema.signals)
        self.ops = <Op*>PyMem_Malloc(max(1, self.nops) * sizeof(Op))
        if self.ops == NULL:
            raise MemoryError()
        for i, (kind, arg, span, col) in enumerate(ops):
            self.ops[i].kind = kind
            self.ops[i].arg = arg
            self.ops[i].span = span
            self.ops[i].col = col

    def __dealloc__(self):
        PyMem_Free(self.ops)

    cdef Py_ssize_t parse(self, const uint8_t* buf, Py_ssize_t n, Py_ssize_t max_records,
                          int64_t* times, Py_ssize_t* ends, ColOut* cols, Py_ssize_t row0,
                          int* reason, Py_ssize_t* where) noexcept nogil:
        """Walk records back to back over buf[0:n]; return their count, or -1 with reason
        and the byte offset where the bad value starts."""
        cdef Py_ssize_t pos = 0, count = 0, row, start, length
        cdef int i, kind
        cdef int64_t v, t
        cdef Op* op
        cdef ColOut* c
        cdef int64_t* pair
        reason[0] = R_OK
        if n <= 0:
            reason[0] = R_EMPTY
            where[0] = 0
            return -1
        while pos < n:
            if count >= max_records:
                reason[0] = R_TOO_MANY
                where[0] = pos
                return -1
            row = row0 + count
            t = 0
            i = 0
            while i < self.nops:
                op = &self.ops[i]
                kind = op.kind
                start = pos
                c = NULL
                if cols != NULL and op.col >= 0 and cols[op.col].data != NULL:
                    c = &cols[op.col]
                if kind == K_LONG or kind == K_INT:
                    pos = read_long(buf, n, pos, &v, reason)
                    if pos < 0:
                        where[0] = start
                        return -1
                    if kind == K_INT:
                        if v < -2147483648 or v > 2147483647:
                            reason[0] = R_BAD_VARINT
                            where[0] = start
                            return -1
                        if c != NULL:
                            (<int32_t*>(c.data + row * 4))[0] = <int32_t>v
                    elif c != NULL:
                        (<int64_t*>(c.data + row * 8))[0] = v
                    if i == self.time_op:
                        if v > self.time_max or v < self.time_min:
                            reason[0] = R_TIME_RANGE
                            where[0] = start
                            return -1
                        t = v
                elif kind == K_DOUBLE:   # constant sizes: the compiler inlines the copy
                    if pos + 8 > n:
                        reason[0] = R_TRUNCATED
                        where[0] = start
                        return -1
                    if c != NULL:
                        memcpy(c.data + row * 8, buf + pos, 8)
                    pos += 8
                elif kind == K_FLOAT:
                    if pos + 4 > n:
                        reason[0] = R_TRUNCATED
                        where[0] = start
                        return -1
                    if c != NULL:
                        memcpy(c.data + row * 4, buf + pos, 4)
                    pos += 4
                elif kind == K_STRING or kind == K_BYTES:
                    pos = read_long(buf, n, pos, &v, reason)
                    if pos < 0:
                        where[0] = start
                        return -1
                    if v < 0:
                        reason[0] = R_NEGATIVE_LENGTH
                        where[0] = start
                        return -1
                    if v > n - pos:
                        reason[0] = R_TRUNCATED
                        where[0] = start
                        return -1
                    if kind == K_STRING and not utf8_ok(buf + pos, v):
                        reason[0] = R_BAD_UTF8
                        where[0] = pos
                        return -1
                    if c != NULL:
                        pair = <int64_t*>(c.data + row * 16)
                        pair[0] = pos
                        pair[1] = v
                    pos += v
                elif kind == K_BOOLEAN:
                    if pos >= n:
                        reason[0] = R_TRUNCATED
                        where[0] = start
                        return -1
                    if buf[pos] > 1:
                        reason[0] = R_BAD_BOOLEAN
                        where[0] = start
                        return -1
                    if c != NULL:
                        (<uint8_t*>c.data)[row] = buf[pos]
                    pos += 1
                elif kind == K_ENUM:
                    pos = read_long(buf, n, pos, &v, reason)
                    if pos < 0:
                        where[0] = start
                        return -1
                    if v < 0 or v >= op.arg:
                        reason[0] = R_BAD_ENUM
                        where[0] = start
                        return -1
                    if c != NULL:
                        (<int32_t*>(c.data + row * 4))[0] = <int32_t>v
                elif kind == K_FIXED:
                    if op.arg > n - pos:
                        reason[0] = R_TRUNCATED
                        where[0] = start
                        return -1
                    if c != NULL:  # bytes objects: numpy's S dtype drops trailing NULs
                        pair = <int64_t*>(c.data + row * 16)
                        pair[0] = pos
                        pair[1] = op.arg
                    pos += op.arg
                elif kind == K_UNION:
                    pos = read_long(buf, n, pos, &v, reason)
                    if pos < 0:
                        where[0] = start
                        return -1
                    if v == op.arg:          # the null branch: skip the value's ops
                        if cols != NULL:
                            mark_null(self.ops, i + 1, i + 1 + op.span, cols, row)
                        i += op.span
                    elif v != (0 if op.arg < 0 else 1 - op.arg):
                        reason[0] = R_BAD_UNION
                        where[0] = start
                        return -1
                if c != NULL and c.mask != NULL:
                    c.mask[row] = 0
                i += 1
            if times != NULL:
                times[count] = t * self.time_scale
            if ends != NULL:
                ends[count] = pos
            count += 1
        return count

    def check(self, data, Py_ssize_t max_records=1 << 30):
        """Check that ``data`` holds whole records back to back, nothing more.

        Returns
        -------
        numpy.ndarray
            int64 ns time of each record (zeros where the plan has no time field).

        Raises
        ------
        DecodeError
            With ``reason`` (one of `REASONS`) and the byte ``offset`` of the bad value.
        """
        cdef const uint8_t[::1] buf = _as_bytes(data)
        cdef Py_ssize_t n = buf.shape[0]
        cdef int reason = 0
        cdef Py_ssize_t where = 0, count
        cdef int64_t[::1] times = np.empty(max(1, min(n, max_records)), dtype=np.int64)
        with nogil:
            count = self.parse(&buf[0] if n else NULL, n, min(n, max_records), &times[0],
                               NULL, NULL, 0, &reason, &where)
        if count < 0:
            raise _decode_error(reason, where, n)
        return np.asarray(times)[:count].copy()

    def validate(self, data):
        """Record count of ``data``, or -reason code (never raises for bad bytes)."""
        cdef const uint8_t[::1] buf = _as_bytes(data)
        cdef Py_ssize_t n = buf.shape[0]
        cdef int reason = 0
        cdef Py_ssize_t where = 0, count
        with nogil:
            count = self.parse(&buf[0] if n else NULL, n, n, NULL, NULL, NULL, 0,
                               &reason, &where)
        return count if count >= 0 else -reason

    def decode_into(self, data, Py_ssize_t count, Py_ssize_t row0, int64_t[::1] times,
                    list columns, list masks):
        """Decode ``count`` records from ``data`` into rows row0.. of preallocated columns.

        ``columns[k]`` is the numpy array of column k (None: not wanted), ``masks[k]`` a
        uint8 array for nullable columns (None otherwise). Returns the count decoded.
        """
        problem = self.decode_blocks([data], [count], [row0], times, columns, masks)[0]
        if problem is not None:
            raise problem
        return count

    def decode_blocks(self, list bodies, counts, rows, int64_t[::1] times, list columns,
                      list masks):
        """Decode many blocks' records at once: ``bodies[i]`` holds ``counts[i]`` records
        that go to rows ``rows[i]``.. of the preallocated columns (as `decode_into`). The
        outputs are checked once and the records parsed in one pass without the GIL, so a
        small block costs its records and little else. Returns one entry per body: None, or
        the DecodeError that kept that body's rows from being filled."""
        cdef Py_ssize_t nb = len(bodies), i, k, top = 0, base = 0
        cdef int64_t[::1] cnt = np.ascontiguousarray(counts, dtype=np.int64)
        cdef int64_t[::1] row = np.ascontiguousarray(rows, dtype=np.int64)
        if cnt.shape[0] != nb or row.shape[0] != nb:
            raise ValueError(f"{nb} bodies, {cnt.shape[0]} counts and {row.shape[0]} rows")
        for i in range(nb):
            if cnt[i] < 0 or row[i] < 0:
                raise ValueError(f"block {i}: rows {row[i]}..{row[i] + cnt[i]}")
            top = max(top, row[i] + cnt[i])
            base = row[i] if i == 0 else min(base, row[i])
        # built without bounds checks: every array written here is checked first
        if times.shape[0] < top:
            raise ValueError(f"{top} rows do not fit a time column of {times.shape[0]}")
        if len(columns) != self.ncols or len(masks) != self.ncols:
            raise ValueError(f"{len(columns)} columns and {len(masks)} masks for a plan of "
                             f"{self.ncols} signals")
        for k in range(self.ncols):
            _check_output(columns[k], masks[k], self.schema.signals[k], top)
        views = [_as_bytes(b) for b in bodies]
        cdef const uint8_t[::1] view
        cdef const uint8_t** ptr = <const uint8_t**>PyMem_Malloc(max(1, nb) * sizeof(void*))
        cdef Py_ssize_t* size = <Py_ssize_t*>PyMem_Malloc(max(1, nb) * sizeof(Py_ssize_t))
        cdef Py_ssize_t* got = <Py_ssize_t*>PyMem_Malloc(max(1, nb) * sizeof(Py_ssize_t))
        cdef Py_ssize_t* where = <Py_ssize_t*>PyMem_Malloc(max(1, nb) * sizeof(Py_ssize_t))
        cdef int* reason = <int*>PyMem_Malloc(max(1, nb) * sizeof(int))
        cdef ColOut* cols = <ColOut*>PyMem_Malloc(max(1, self.ncols) * sizeof(ColOut))
        cdef int64_t[:, ::1] pairs
        cdef list scratch = [None] * self.ncols
        try:
            if not (ptr and size and got and where and reason and cols):
                raise MemoryError()
            for i in range(nb):
                view = views[i]
                size[i] = view.shape[0]
                ptr[i] = &view[0] if size[i] else NULL
            for k in range(self.ncols):
                col = columns[k]
                cols[k].data = NULL
                cols[k].mask = NULL
                if col is None:
                    continue
                if col.dtype.hasobject:   # (offset, length) pairs first, objects after
                    scratch[k] = np.empty((top - base, 2), dtype=np.int64)
                    pairs = scratch[k]
                    cols[k].data = <char*>&pairs[0, 0] - base * 16 if top > base else NULL
                    cols[k].itemsize = 16
                else:
                    cols[k].itemsize = col.dtype.itemsize
                    cols[k].data = <char*><uintptr_t>col.__array_interface__["data"][0]
                if masks[k] is not None:
                    cols[k].mask = <uint8_t*><uintptr_t>masks[k].__array_interface__["data"][0]
            with nogil:
                for i in range(nb):
                    reason[i] = 0
                    where[i] = 0
                    got[i] = self.parse(ptr[i], size[i], cnt[i], &times[row[i]], NULL, cols,
                                        row[i], &reason[i], &where[i])
            problems = []
            for i in range(nb):
                if got[i] < 0 or got[i] != cnt[i]:
                    problems.append(_decode_error(reason[i] if got[i] < 0 else R_TRUNCATED,
                                                  where[i], size[i]))
                    continue
                problems.append(None)
                for k in range(self.ncols):
                    if scratch[k] is not None and cnt[i]:
                        _objects_from_pairs(views[i],
                                            scratch[k][row[i] - base:row[i] - base + cnt[i]],
                                            columns[k], row[i],
                                            self.schema.signals[k].type == "string")
            return problems
        finally:
            PyMem_Free(ptr)
            PyMem_Free(size)
            PyMem_Free(got)
            PyMem_Free(where)
            PyMem_Free(reason)
            PyMem_Free(cols)


_ITEMSIZE = {"boolean": 1, "int": 4, "long": 8, "float": 4, "double": 8, "enum": 4}


def _check_output(col, mask, signal, Py_ssize_t rows):
    """An output column for decode_into: a contiguous array of the signal's item size (object
    for strings, bytes and fixed) with room for ``rows`` rows, and a uint8 mask when given."""
    if col is None:
        return
    if not isinstance(col, np.ndarray) or not col.flags.c_contiguous or col.ndim != 1:
        raise ValueError(f"signal {signal.name!r}: the output must be a contiguous 1-D array")
    if col.shape[0] < rows:
        raise ValueError(f"signal {signal.name!r}: {rows} rows do not fit a column of "
                         f"{col.shape[0]}")
    want = _ITEMSIZE.get(signal.type)
    if (want is None) != col.dtype.hasobject or (want is not None and col.dtype.itemsize != want):
        raise ValueError(f"signal {signal.name!r}: a column of {col.dtype} cannot hold "
                         f"{signal.type} values")
    if mask is not None and (not isinstance(mask, np.ndarray) or mask.dtype.itemsize != 1
                             or not mask.flags.c_contiguous or mask.shape[0] < rows):
        raise ValueError(f"signal {signal.name!r}: the mask must be a uint8 array of at "
                         f"least {rows} rows")


cdef _objects_from_pairs(const uint8_t[::1] buf, int64_t[:, ::1] pairs, object[:] out,
                         Py_ssize_t row0, bint text):
    """Build str/bytes objects, reusing the previous one when a value repeats (telemetry
    strings such as a status word mostly do)."""
    cdef Py_ssize_t i, off, ln, prev_off = -1, prev_ln = -1
    cdef const char* base = <const char*>&buf[0] if buf.shape[0] else NULL
    prev = None
    for i in range(pairs.shape[0]):
        off = pairs[i, 0]
        ln = pairs[i, 1]
        if ln < 0:
            out[row0 + i] = None
            continue
        if not (ln == prev_ln and (ln == 0 or memcmp(base + off, base + prev_off, ln) == 0)):
            prev = (PyUnicode_DecodeUTF8(base + off, ln, NULL) if text
                    else PyBytes_FromStringAndSize(base + off, ln))
            prev_off = off
            prev_ln = ln
        out[row0 + i] = prev


cdef const uint8_t[::1] _as_bytes(data):
    if isinstance(data, (bytes, bytearray, memoryview)):
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1 or not mv.c_contiguous:
            mv = memoryview(bytes(mv))
        return mv.cast("B") if mv.format != "B" else mv
    return memoryview(np.ascontiguousarray(data).view(np.uint8).reshape(-1))


def _decode_error(int reason, Py_ssize_t where, Py_ssize_t n):
    name = REASONS[reason]
    return DecodeError(f"{REASON_TEXT.get(name, name)} at byte {where} of {n}",
                       reason=name, offset=where)


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_ASCII(PyObject* s)


_ENCODE_DTYPES = {K_BOOLEAN: np.uint8, K_INT: np.int32, K_ENUM: np.int32, K_LONG: np.int64,
                  K_FLOAT: np.float32, K_DOUBLE: np.float64}


def check_objects(Plan plan, list columns):
    """Check, before any record is encoded, the values `encode_columns` can only check as
    it goes (strings, bytes, fixed): so that encoding in slices never fails halfway.
    Returns the columns with those as lists; raises ValueError naming the signal and row."""
    cdef int i, kind, c
    cdef Py_ssize_t row, length
    cdef list values
    out = list(columns)
    for i in range(plan.nops):
        kind, c = plan.ops[i].kind, plan.ops[i].col
        if c < 0 or kind not in (K_STRING, K_BYTES, K_FIXED):
            continue
        col = columns[c]
        values = col.tolist() if isinstance(col, np.ndarray) else list(col)
        out[c] = values
        name = plan.schema.signals[c].name
        for row in range(len(values)):
            if kind == K_STRING and PyUnicode_CheckExact(values[row]) and \
                    PyUnicode_IS_ASCII(<PyObject*>values[row]):
                continue             # the usual string: its bytes are its characters
            try:
                if kind == K_STRING and not isinstance(values[row], str):
                    raise TypeError(f"{type(values[row]).__name__}, not a string")
                if kind == K_STRING:
                    PyUnicode_AsUTF8AndSize(values[row], &length)
                elif kind == K_FIXED and len(bytes(values[row])) != plan.ops[i].arg:
                    raise ValueError(f"{len(bytes(values[row]))} bytes where the schema "
                                     f"says {plan.ops[i].arg}")
                elif kind == K_BYTES:
                    bytes(values[row])
            except (TypeError, ValueError) as e:     # UnicodeError is a ValueError
                raise ValueError(f"signal {name!r}, row {row}: {values[row]!r} "
                                 f"cannot be encoded ({e})") from None
    return out


def encode_columns(Plan plan, time, list columns, list masks=None):
    """Avro binary of records given as columns (as `decode` returns them).

    Returns the records back to back and the end offset of each (to cut datagrams).
    ``time`` is int64 ns (unused by the wire plan of a stamped channel); enum columns hold
    symbol indexes; ``masks[k]``, where given, is true where signal k is null.
    """
    cdef Py_ssize_t n = len(time), row, length, pos = 0, k, cap
    cdef int i, kind, c
    cdef Op* op
    cdef const char* s
    cdef char* out
    cdef int64_t v
    cdef bint null, seen
    # in the unit's ticks, floored, as one vectorised division (numpy divides by a constant
    # without the CPU's slow divide instruction)
    cdef int64_t[::1] tv = np.floor_divide(np.ascontiguousarray(time, dtype=np.int64),
                                           plan.time_scale)
    masks = masks or [None] * plan.ncols
    if len(columns) != plan.ncols or len(masks) != plan.ncols:
        raise ValueError(f"{len(columns)} columns and {len(masks)} masks for a plan of "
                         f"{plan.ncols} signals")
    keep = []    # arrays whose memory the pointers below use
    cdef list objects = [None] * plan.ncols
    cdef list values
    ends = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] ev = ends
    cdef char** data = <char**>PyMem_Malloc(max(1, plan.ncols) * sizeof(char*))
    cdef uint8_t** nulls = <uint8_t**>PyMem_Malloc(max(1, plan.ncols) * sizeof(uint8_t*))
    cdef PyObject* raw
    try:
        if data == NULL or nulls == NULL:
            raise MemoryError()
        for i in range(plan.nops):
            c = plan.ops[i].col
            if c < 0:
                continue
            data[c] = NULL
            nulls[c] = NULL
            kind = plan.ops[i].kind
            if kind in _ENCODE_DTYPES:
                a = np.ascontiguousarray(columns[c], dtype=_ENCODE_DTYPES[kind])
                keep.append(a)
                data[c] = <char*><uintptr_t>a.__array_interface__["data"][0]
            else:
                a = list(columns[c])
                objects[c] = a
            if len(a) != n:
                raise ValueError(f"column {c} has {len(a)} values for {n} records")
            if masks[c] is not None:
                m = np.ascontiguousarray(masks[c], dtype=np.uint8)
                if len(m) != n:
                    raise ValueError(f"mask {c} has {len(m)} values for {n} records")
                keep.append(m)
                nulls[c] = <uint8_t*><uintptr_t>m.__array_interface__["data"][0]
        # written straight into the bytes object returned (grown rarely: the guess is
        # close), cut to size in place at the end: no copy of the records
        cap = max(64, n * _record_guess(plan, objects))
        result = PyBytes_FromStringAndSize(NULL, cap)
        out = PyBytes_AS_STRING(result)
        for row in range(n):
            i = 0
            while i < plan.nops:
                op = &plan.ops[i]
                kind = op.kind
                c = op.col
                if cap - pos < 32:
                    result = _grown(result, pos, &cap, cap)
                    out = PyBytes_AS_STRING(result)
                if i == plan.time_op or kind == K_LONG or kind == K_INT or kind == K_ENUM \
                        or kind == K_UNION:
                    if i == plan.time_op:
                        v = tv[row]
                    elif kind == K_UNION:
                        # null when every signal under it is null: a record with one null
                        # field among others is itself present
                        null = op.arg >= 0
                        seen = False
                        for k in range(i + 1, i + 1 + op.span):
                            if plan.ops[k].col < 0:
                                continue
                            seen = True
                            if nulls[plan.ops[k].col] == NULL or \
                                    not nulls[plan.ops[k].col][row]:
                                null = False
                                break
                        null = null and seen
                        v = op.arg if null else (0 if op.arg < 0 else 1 - op.arg)
                        if null:
                            i += op.span
                    elif kind == K_LONG:
                        v = (<int64_t*>data[c])[row]
                    else:
                        v = (<int32_t*>data[c])[row]
                    pos += put_varint(<uint8_t*>out + pos, v)
                elif kind == K_DOUBLE:
                    memcpy(out + pos, data[c] + row * 8, 8)
                    pos += 8
                elif kind == K_FLOAT:
                    memcpy(out + pos, data[c] + row * 4, 4)
                    pos += 4
                elif kind == K_BOOLEAN:
                    out[pos] = 1 if (<uint8_t*>data[c])[row] else 0
                    pos += 1
                elif kind == K_STRING or kind == K_BYTES or kind == K_FIXED:
                    values = <list>objects[c]
                    value = values[row]
                    if kind == K_STRING:
                        s = PyUnicode_AsUTF8AndSize(value, &length)
                    else:
                        value = bytes(value)
                        s = <const char*>value
                        length = len(value)
                        if kind == K_FIXED and length != op.arg:
                            raise ValueError(f"fixed value of {length} bytes where the "
                                             f"schema says {op.arg}")
                    if cap - pos < length + 10:
                        result = _grown(result, pos, &cap, length + cap)
                        out = PyBytes_AS_STRING(result)
                    if kind != K_FIXED:
                        pos += put_varint(<uint8_t*>out + pos, length)
                    memcpy(out + pos, s, length)
                    pos += length
                i += 1
            ev[row] = pos
        raw = <PyObject*>result
        Py_INCREF(result)
        result = None                  # raw holds the only reference, as a resize needs
        _PyBytes_Resize(&raw, pos)     # on failure it frees the object and raises
        result = <object>raw
        Py_DECREF(result)
        return result, ends
    finally:
        PyMem_Free(data)
        PyMem_Free(nulls)


cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject** string, Py_ssize_t size) except -1


cdef bytes _grown(bytes result, Py_ssize_t used, Py_ssize_t* cap, Py_ssize_t more):
    """A bigger bytes object holding the first ``used`` bytes of ``result``."""
    bigger = PyBytes_FromStringAndSize(NULL, cap[0] + more)
    memcpy(PyBytes_AS_STRING(bigger), PyBytes_AS_STRING(result), used)
    cap[0] += more
    return bigger


cdef Py_ssize_t _record_guess(Plan plan, list objects):
    """Bytes a record will take, about: fixed sizes, 10 per varint, the first value of each
    string column (so the output is rarely grown)."""
    cdef Py_ssize_t size = 0
    cdef int i
    for i in range(plan.nops):
        kind = plan.ops[i].kind
        if kind == K_DOUBLE:
            size += 8
        elif kind == K_FLOAT:
            size += 4
        elif kind == K_BOOLEAN:
            size += 1
        elif kind == K_FIXED:
            size += plan.ops[i].arg
        elif kind == K_STRING or kind == K_BYTES:
            col = objects[plan.ops[i].col] if plan.ops[i].col >= 0 else None
            size += 2 + (len(col[0]) if col else 16)
        else:
            size += 10
    return size + 16


def read_varint(data, Py_ssize_t pos=0):
    """(value, next position) of the Avro long (zigzag varint) at ``pos``: the codec's own
    strict reader, for the store's container-file code. Raises DecodeError."""
    cdef const uint8_t[::1] buf = _as_bytes(data)
    cdef Py_ssize_t n = buf.shape[0], end
    cdef int reason = 0
    cdef int64_t v = 0
    if pos < 0 or pos > n:
        raise _decode_error(R_TRUNCATED, pos, n)
    end = read_long(&buf[0] if n else NULL, n, pos, &v, &reason)
    if end < 0:
        raise _decode_error(reason, pos, n)
    return v, end


def block_frame(buf, Py_ssize_t pos, bytes sync):
    """(record count, payload start, payload size, end) of the Avro container block at
    ``pos``: two longs, the payload, the sync marker. Raises DecodeError for a bad long
    and ValueError when the sync marker is not where the sizes say."""
    cdef Py_buffer view
    cdef Py_ssize_t n, p, end, ns = len(sync)
    cdef int reason = 0
    cdef int64_t count = 0, size = 0
    cdef const uint8_t* data
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)     # a block header: no copy, no checks
    try:
        n = view.len
        data = <const uint8_t*>view.buf
        if pos < 0 or pos > n:
            raise _decode_error(R_TRUNCATED, pos, n)
        p = read_long(data, n, pos, &count, &reason)
        if p >= 0:
            p = read_long(data, n, p, &size, &reason)
        if p < 0:
            raise _decode_error(reason, pos, n)
        end = p + size + ns
        if size < 0 or end > n or end < p:
            raise ValueError(f"block at byte {pos} is torn or corrupt")
        if memcmp(data + end - ns, <const char*>sync, ns) != 0:
            raise ValueError(f"block at byte {pos} does not end in the file's sync marker")
        return count, p, size, end
    finally:
        PyBuffer_Release(&view)


def write_varint(int64_t value):
    """The Avro long (zigzag varint) bytes of ``value``."""
    cdef uint8_t out[10]
    return PyBytes_FromStringAndSize(<char*>out, put_varint(out, value))
