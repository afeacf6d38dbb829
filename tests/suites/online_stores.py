"""The contract every online store keeps (run on SQLite and on the real Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.features.online_stores import OnlineStore


class OnlineStoreContract:
    @pytest.fixture
    def store(self) -> Iterator[OnlineStore]:
        raise NotImplementedError

    def test_what_is_written_is_read_back_in_key_order(self, store: OnlineStore) -> None:
        assert store.write("v", [("1", 100, [1.5, "a"]), ("2", 200, [2.5, None])]) == 2
        assert store.read("v", ["2", "9", "1"]) == [(200, [2.5, None]), None, (100, [1.5, "a"])]
        assert store.read("v", ["1"]) == [(100, [1.5, "a"])]

    def test_an_unknown_view_reads_as_missing(self, store: OnlineStore) -> None:
        assert store.read("never", ["1", "2"]) == [None, None]

    def test_an_older_record_never_replaces_a_newer_one(self, store: OnlineStore) -> None:
        store.write("v", [("1", 200, [2.0])])
        store.write("v", [("1", 100, [1.0])])
        assert store.read("v", ["1"]) == [(200, [2.0])]
        store.write("v", [("1", 300, [3.0])])
        assert store.read("v", ["1"]) == [(300, [3.0])]

    def test_expired_records_are_deleted_and_the_newest_time_known(
        self, store: OnlineStore
    ) -> None:
        store.write("v", [("1", 100, [1]), ("2", 200, [2]), ("3", 300, [3])])
        assert store.newest("v") == 300
        assert store.delete_older("v", 200) == 1  # strictly older than 200
        assert store.read("v", ["1", "2", "3"]) == [None, (200, [2]), (300, [3])]

    def test_many_keys_are_read_at_once(self, store: OnlineStore) -> None:
        store.write("v", [(str(i), i, [i]) for i in range(1200)])
        found = store.read("v", [str(i) for i in range(1200)])
        assert [r[1][0] for r in found if r] == list(range(1200))

    def test_drop_forgets_a_view(self, store: OnlineStore) -> None:
        store.write("v", [("1", 1, [1])])
        store.drop("v")
        assert store.read("v", ["1"]) == [None]
        assert store.newest("v") is None

    def test_packed_numeric_records_read_back_with_nulls(self, store: OnlineStore) -> None:
        import numpy as np

        from conveyor.features.online_stores import pack_many

        values = np.array([[1.5, np.nan], [2.0, 7.0]])
        payloads = pack_many(np.array([10, 20]), values)
        assert store.write_encoded("v", ["a", "b"], [10, 20], payloads) == 2
        assert store.read("v", ["b", "a", "z"]) == [(20, [2.0, 7.0]), (10, [1.5, None]), None]
        assert store.read("v", ["a"]) == [(10, [1.5, None])]
