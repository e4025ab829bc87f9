"""``vectorpack``: a VectorPack directory (docs/formats/vectorpack.md), read and written like
any store. ``vectorpack:///path/memory.vpack``.

Writing builds the whole pack in ``<dir>.partial`` and renames it into place at the end, so a
pack is never left looking complete; a second run into the same directory replaces the pack
(like a file target). Reading refuses a pack that is damaged or unsafe first (once per
connector: every manifest path inside the pack, no symlink, no unlisted file, every file's
size and hash; see ``open_pack``), and checks each text blob against its own hash and each
record against its content id (a mismatch is a ``content_id_mismatch`` reject; ``--no-verify``
skips this check, never the pack's safety checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from ..errors import InvalidSpecError
from ..pack.cartridge import Cartridge
from ..pack.vectorpack import PackWriter, open_pack
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, VectorSpace, Writer
from .cartridge import PackStoreWriter, cartridge_pages, cartridge_spaces, pack_query, verify_content_ids

__all__ = ["VectorPackConnector"]


class VectorPackConnector(AtPath, Connector):
    name = "vectorpack"
    url_options = frozenset()
    suffixes = (".vpack",)
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=2000, read_ahead=True,
                                read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise InvalidSpecError("vectorpack needs a directory: vectorpack:///path/memory.vpack")
        self.path = Path(spec.path)
        self._checked = False
        self._searcher: Any = None

    def describe(self) -> dict[str, Any]:
        return {"connector": "vectorpack", "location": str(self.path.resolve())}

    def open(self) -> tuple[Cartridge, Callable[[str], str], dict[str, Any]]:
        """The pack's cartridge, text-blob reader and manifest. The pack is checked the first
        time (``open_pack``: layout, symlinks, unlisted files, hashes), as a run opens it for
        its count, its spaces and its read."""
        opened = open_pack(self.path, check=not self._checked)
        self._checked = True
        return opened

    def count(self) -> int | None:
        cartridge, _, manifest = self.open()
        cartridge.close()
        return int(manifest.get("records", 0))

    def vector_spaces(self) -> dict[str, VectorSpace]:
        cartridge, _, _ = self.open()
        with closing(cartridge):
            return cartridge_spaces(cartridge)

    read_checks = ("layout and hashes", "content ids")

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        cartridge, text_of, _ = self.open()
        with closing(cartridge):
            yield from cartridge_pages(cartridge, batch_size, after, text_of, verify=self.verify_reads)

    def verify_source(self) -> dict[str, Any]:
        """The pack's layout and hashes (every opener refuses an unsafe pack, with or without
        ``--no-verify``) and every record's content id."""
        cartridge, text_of, _ = self.open()
        with closing(cartridge):
            return {"layout and hashes": "ok", **verify_content_ids(cartridge, text_of)}

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        sink = None if dry_run else PackWriter(self.path, resume=resume)
        return PackStoreWriter(sink, spaces or {})

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """``vex search``'s vector search on the pack (its flat index or usearch graph when
        ``vex pack reindex`` built them, else an exact scan of its cartridge)."""
        if self._searcher is None:
            from ..pack.search import Searcher

            self._searcher = Searcher(self.path)
        return pack_query(self._searcher, vector, k, namespace, vector_name)

    def query_metric(self, vector_name: str = "") -> str | None:
        return "cosine"  # vex search ranks by cosine whatever metric the pack records

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None
