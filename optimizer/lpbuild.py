"""A small vectorised LP builder for highspy (used where Pyomo's per-component build is too slow).

Columns and rows are added in numpy blocks; the matrix is collected as
(row, column, value) triplets and handed to HiGHS row-wise in one call.
"""

from __future__ import annotations

import highspy
import numpy as np

INF = highspy.kHighsInf


class SparseLP:
    """Columns with bounds and costs, rows with bounds, and the triplets of the constraint matrix."""

    def __init__(self) -> None:
        self.n_col = 0
        self.n_row = 0
        self._cols: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []
        self._trip: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add_cols(self, n: int, lower=0.0, upper=INF, cost=0.0) -> np.ndarray:
        """Add ``n`` columns; returns their indices."""
        idx = np.arange(self.n_col, self.n_col + n)
        self._cols.append(tuple(np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()
                                for x in (lower, upper, cost)))
        self.n_col += n
        return idx

    def add_rows(self, n: int, lower=-INF, upper=INF) -> np.ndarray:
        """Add ``n`` rows; returns their indices."""
        idx = np.arange(self.n_row, self.n_row + n)
        self._rows.append(tuple(np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy() for x in (lower, upper)))
        self.n_row += n
        return idx

    def add_terms(self, rows, cols, values) -> None:
        """Add coefficients (broadcast together) to the matrix."""
        r, c, v = np.broadcast_arrays(np.asarray(rows), np.asarray(cols), np.asarray(values, dtype=float))
        self._trip.append((r.ravel().astype(np.int64), c.ravel().astype(np.int64), v.ravel().astype(float)))

    def to_highs(self) -> highspy.Highs:
        """A quiet ``highspy.Highs`` holding this LP (minimising)."""
        lower, upper, cost = (np.concatenate([c[i] for c in self._cols]) for i in range(3))
        rlo, rup = ((np.concatenate([r[i] for r in self._rows]) if self._rows else np.zeros(0)) for i in range(2))
        if self._trip:
            rows = np.concatenate([t[0] for t in self._trip])
            cols = np.concatenate([t[1] for t in self._trip])
            vals = np.concatenate([t[2] for t in self._trip])
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
            vals = np.zeros(0)
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        if len(rows):  # HiGHS rejects repeated entries: add them up
            first = np.ones(len(rows), dtype=bool)
            first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
            starts = np.nonzero(first)[0]
            rows, cols, vals = rows[starts], cols[starts], np.add.reduceat(vals, starts)
        keep = vals != 0.0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        start = np.zeros(self.n_row + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=self.n_row), out=start[1:])
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_col
        lp.num_row_ = self.n_row
        lp.col_cost_ = cost
        lp.col_lower_ = lower
        lp.col_upper_ = upper
        lp.row_lower_ = rlo
        lp.row_upper_ = rup
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = cols.astype(np.int32)
        lp.a_matrix_.value_ = vals
        lp.sense_ = highspy.ObjSense.kMinimize
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.passModel(lp)
        return h

