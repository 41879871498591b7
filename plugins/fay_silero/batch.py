"""The Silero VAD graph made to score one window of many streams in one call (streams in the LSTM's batch axis).

The Silero VAD v6 model that ships in faster-whisper reads ``input`` of shape ``(n, 576)`` as ``n`` consecutive
windows of ONE stream: its encoder scores each window on its own, then ``/Transpose`` (perm ``[0, 2, 1]``) lays
them out as the LSTM's time axis (``(n, 1, 128)``: sequence ``n``, batch 1) with the state ``h``/``c`` of shape
``(1, 1, 128)``. Changing that perm to ``[2, 0, 1]`` lays them out as the batch axis instead (``(1, n, 128)``:
one time step of ``n`` streams) and the state becomes ``(1, n, 128)``, one row per stream; the rest of the graph
(the per-window decoder convolution, the final reshape to ``(n,)``) already works per window. The arithmetic of
each stream is the same as in its own call, so the probabilities are equal (the tests compare them).

:func:`batched_model` makes that change on the model's bytes with a small protobuf wire-format editor (no
``onnx`` package needed), and returns ``None`` for a model whose graph is not the one described here (another
version, a user's own file): the engine then scores each stream on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

# ONNX protobuf field numbers (onnx/onnx.proto3)
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 11, 12
_NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 3, 4, 5
_ATTR_NAME, _ATTR_INTS = 1, 8
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM = 1, 2, 1
_DIM_VALUE, _DIM_PARAM = 1, 2

_TRANSPOSE = b"/Transpose"  # the encoder's output laid out for the LSTM
_STATES = (b"h", b"c", b"hn", b"cn")  # (1, 1, 128): the middle axis becomes the batch of streams


@dataclass
class _Field:
    number: int
    wire: int
    value: int | bytes  # varint or fixed value (int), or length-delimited payload (bytes)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _put_varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as protobuf writes it
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _parse(buf: bytes) -> list[_Field]:
    fields: list[_Field] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            fields.append(_Field(number, wire, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            fields.append(_Field(number, wire, buf[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            fields.append(_Field(number, wire, int.from_bytes(buf[pos : pos + width], "little")))
            pos += width
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _serialize(fields: list[_Field]) -> bytes:
    out = bytearray()
    for f in fields:
        out += _put_varint(f.number << 3 | f.wire)
        if f.wire == 0:
            assert isinstance(f.value, int)
            out += _put_varint(f.value)
        elif f.wire == 2:
            assert isinstance(f.value, bytes)
            out += _put_varint(len(f.value)) + f.value
        else:
            assert isinstance(f.value, int)
            out += f.value.to_bytes(8 if f.wire == 1 else 4, "little")
    return bytes(out)


def _first(fields: list[_Field], number: int) -> bytes | None:
    return next((f.value for f in fields if f.number == number and isinstance(f.value, bytes)), None)


def _ints(fields: list[_Field], number: int) -> list[int]:
    """A repeated int64 field, packed or not."""
    out: list[int] = []
    for f in fields:
        if f.number != number:
            continue
        if isinstance(f.value, int):
            out.append(f.value)
        else:
            pos = 0
            while pos < len(f.value):
                v, pos = _varint(f.value, pos)
                out.append(v)
    return out


def _patch_transpose(node: bytes) -> bytes | None:
    """The ``/Transpose`` node with perm ``[2, 0, 1]``; None if ``node`` is another node."""
    fields = _parse(node)
    if _first(fields, _NODE_NAME) != _TRANSPOSE or _first(fields, _NODE_OP_TYPE) != b"Transpose":
        return None
    for f in fields:
        if f.number == _NODE_ATTRIBUTE and isinstance(f.value, bytes):
            attr = _parse(f.value)
            if _first(attr, _ATTR_NAME) == b"perm":
                if _ints(attr, _ATTR_INTS) != [0, 2, 1]:
                    raise ValueError("unexpected /Transpose perm")
                attr = [a for a in attr if a.number != _ATTR_INTS] + [_Field(_ATTR_INTS, 0, v) for v in (2, 0, 1)]
                f.value = _serialize(attr)
                return _serialize(fields)
    raise ValueError("/Transpose has no perm")


def _patch_state(value_info: bytes) -> bytes | None:
    """A state input/output with its middle axis named ``batch``; None if it is another value."""
    fields = _parse(value_info)
    if _first(fields, _VALUE_NAME) not in _STATES:
        return None
    type_f = next(f for f in fields if f.number == _VALUE_TYPE)
    type_fields = _parse(type_f.value)  # type: ignore[arg-type]
    tensor_f = next(f for f in type_fields if f.number == _TYPE_TENSOR)
    tensor = _parse(tensor_f.value)  # type: ignore[arg-type]
    shape_f = next(f for f in tensor if f.number == _TENSOR_SHAPE)
    shape = _parse(shape_f.value)  # type: ignore[arg-type]
    dims = [f for f in shape if f.number == _SHAPE_DIM]
    values = [_ints(_parse(d.value), _DIM_VALUE) for d in dims]  # type: ignore[arg-type]
    if values != [[1], [1], [128]]:
        raise ValueError(f"unexpected state shape {values}")
    dims[1].value = _serialize([_Field(_DIM_PARAM, 2, b"batch")])
    shape_f.value = _serialize(shape)
    tensor_f.value = _serialize(tensor)
    type_f.value = _serialize(type_fields)
    return _serialize(fields)


def batched_model(model: bytes) -> bytes | None:
    """``model`` (Silero VAD v6 ONNX bytes) changed to score one window of each of ``n`` streams per call, or
    None if its graph is not the one this module knows."""
    try:
        fields = _parse(model)
        graph_f = next(f for f in fields if f.number == _MODEL_GRAPH)
        graph = _parse(graph_f.value)  # type: ignore[arg-type]
        transposed = states = 0
        for f in graph:
            if not isinstance(f.value, bytes):
                continue
            if f.number == _GRAPH_NODE:
                patched = _patch_transpose(f.value)
                transposed += patched is not None
            elif f.number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
                patched = _patch_state(f.value)
                states += patched is not None
            else:
                continue
            if patched is not None:
                f.value = patched
        if transposed != 1 or states != len(_STATES):
            return None
        graph_f.value = _serialize(graph)
        return _serialize(fields)
    except (ValueError, StopIteration, TypeError):
        return None
