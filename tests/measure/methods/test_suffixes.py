"""Where an attack suffix goes (evidence.measure.methods.suffixes)."""

from __future__ import annotations

import pytest

from evidence.errors import MeasurementError
from evidence.measure.methods.suffixes import anchored_end, insert_suffix


def test_insert_suffix_goes_before_the_anchor():
    ids = [1, 10, 11, 12, 20, 21]
    assert anchored_end(ids, [20, 21]) == 2 and anchored_end(ids, []) == 0
    assert insert_suffix(ids, [7, 8], anchored_end(ids, [20, 21])) == [1, 10, 11, 12, 7, 8, 20, 21]
    assert insert_suffix(ids, [7], anchored_end(ids, [])) == [1, 10, 11, 12, 20, 21, 7]
    with pytest.raises(MeasurementError, match="anchor"):
        anchored_end(ids, [99])
    with pytest.raises(MeasurementError, match="anchor"):
        anchored_end([20], [1, 20])
