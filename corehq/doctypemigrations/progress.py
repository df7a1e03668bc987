"""Progress bars for long phases: tqdm on a terminal, nothing otherwise."""
from tqdm import tqdm


class _Silent:
    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def no_progress(desc, total=None, initial=0, unit='it'):
    return _Silent()


def terminal_progress(stream):
    """A progress factory drawing tqdm bars (count, rate, ETA) on ``stream``.

    ``total`` may be a callable, for totals that cost a query: only a bar that
    is drawn asks for it.
    """
    def factory(desc, total=None, initial=0, unit='it'):
        if callable(total):
            total = total()
        return tqdm(desc=desc, total=total, initial=initial, unit=f" {unit}", file=stream,
                    dynamic_ncols=True, mininterval=0.5, unit_scale=True)
    return factory
