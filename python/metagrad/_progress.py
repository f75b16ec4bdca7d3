"""Progress bars of long calls (tqdm, terminal or Jupyter), drawn only when asked for."""

from __future__ import annotations


class _Bar:
    """A tqdm bar (terminal or Jupyter) driven by (done, total) updates. It is drawn at the
    first update, so a call refused by validation prints nothing."""

    def __init__(self, desc: str, unit: str):
        self._args, self._tqdm = (desc, unit), None

    @property
    def _bar(self):
        if self._tqdm is None:
            from tqdm.auto import tqdm

            desc, unit = self._args
            self._tqdm = tqdm(desc=desc, unit=unit, total=0)
        return self._tqdm

    def update_to(self, done: int, total: int) -> None:
        bar = self._bar
        if bar.total != total:
            bar.total = total
        # through tqdm's own rate limit (it takes negative steps too): a log file gets a
        # line every `mininterval`, not one per update
        bar.update(done - bar.n)

    def set_description(self, text: str) -> None:
        self._bar.set_description(text, refresh=False)

    def set_postfix(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


class progress:
    """Context manager yielding a :class:`_Bar` when ``verbose``, else ``None``."""

    def __init__(self, verbose: bool, desc: str, unit: str):
        self._args = (desc, unit) if verbose else None
        self._bar = None

    def __enter__(self):
        if self._args is not None:
            self._bar = _Bar(*self._args)
        return self._bar

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
