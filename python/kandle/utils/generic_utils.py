"""Owns kandle's console output for training: the Keras-2.2-style `Progbar` and `print_msg`.

The bar looks exactly like Keras 2.2's::

      352/50000 [..............................] - ETA: 2:31 - loss: 4.6052 - acc: 0.0100
    50000/50000 [==============================] - 58s 1ms/step - loss: 3.9989 - acc: 0.0889

`verbose=2` prints only one line when the bar is finalized: `` - 58s - loss: 3.9989 - acc: 0.0889``.

Dynamic display (the line is rewritten in place with ``'\\r'`` and padded with spaces to erase a
longer previous line; never ``'\\b'``) is used when `is_dynamic_display()` says so: environment
variable ``KANDLE_PROGBAR=dynamic`` forces it, ``KANDLE_PROGBAR=static`` forbids it, otherwise it
is on when ``sys.stdout.isatty()`` or when running under Jupyter (``'ipykernel' in sys.modules``).
Without it (stdout is a file or a pipe) the bar writes whole lines only: the final line of each
bar, plus at most one progress line every `Progbar.static_interval` seconds (30 s) for long runs.

All output goes to ``sys.stdout`` looked up at write time (so pytest's and Jupyter's capture
work), flushed after each write.
"""

import numbers
import os
import sys
import time

__all__ = ["Progbar", "print_msg", "end_line", "is_dynamic_display"]

# The stream whose current line was left unfinished by a dynamic bar (None when none is).
_open_stream = None


def _now():
    """Wall clock used by `Progbar`; tests replace it with a fake clock."""
    return time.time()


def _write(text, leaves_line_open=False):
    global _open_stream
    stream = sys.stdout
    if stream is None:  # pythonw and friends
        return
    stream.write(text)
    stream.flush()
    _open_stream = stream if leaves_line_open else None


def end_line():
    """Ends the line a dynamic bar left unfinished on ``sys.stdout`` (no-op otherwise)."""
    if _open_stream is not None and _open_stream is sys.stdout:
        _write("\n")


def print_msg(message, line_break=True):
    """Prints `message` to ``sys.stdout``, first ending a line left unfinished by a dynamic bar
    (only on process 0 of a data-parallel run: the others would repeat it)."""
    from kandle.distribution.distribution_lib import _is_chief

    if not _is_chief():
        return
    prefix = "\n" if (_open_stream is not None and _open_stream is sys.stdout) else ""
    _write(prefix + str(message) + ("\n" if line_break else ""), leaves_line_open=not line_break)


def is_dynamic_display(stream=None):
    """True when progress should be redrawn in place (tty, Jupyter, or KANDLE_PROGBAR=dynamic)."""
    mode = os.environ.get("KANDLE_PROGBAR", "").strip().lower()
    if mode == "dynamic":
        return True
    if mode in ("static", "lines", "plain"):
        return False
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except (ValueError, OSError):  # closed or detached stream
        pass
    return "ipykernel" in sys.modules


def _is_number(value):
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _format_value(value):
    """Keras's number format: ``' %.4f'`` if ``abs(v) > 1e-3`` else ``' %.4e'``."""
    if isinstance(value, list):  # [sum, count] of an averaged (non-stateful) value
        value = value[0] / max(1, value[1])
    elif not _is_number(value):
        try:
            value = float(value)  # numpy 0-d arrays and other float-likes
        except (TypeError, ValueError):
            return " %s" % (value,)
    value = float(value)
    return " %.4f" % value if abs(value) > 1e-3 else " %.4e" % value


def format_eta(eta):
    """Keras 2.2 ETA format: ``h:mm:ss`` above an hour, ``m:ss`` above a minute, else ``Ns``."""
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


def format_time_per_unit(time_per_unit, unit_name="step"):
    """``'%.0fs/step'`` if >= 1 s, ``'%.0fms/step'`` if >= 1 ms, else ``'%.0fus/step'``."""
    if time_per_unit >= 1:
        return "%.0fs/%s" % (time_per_unit, unit_name)
    if time_per_unit >= 1e-3:
        return "%.0fms/%s" % (time_per_unit * 1e3, unit_name)
    return "%.0fus/%s" % (time_per_unit * 1e6, unit_name)


class Progbar:
    """Displays a progress bar (Keras 2.2 look).

    Arguments:
        target: total number of steps (or samples) expected; None if unknown.
        width: progress bar width on screen.
        verbose: 0 (silent), 1 (bar), 2 (one line when finalized).
        interval: minimum seconds between two dynamic redraws.
        stateful_metrics: names of values shown as given; other values are averaged over the
            steps (weighted by the step increments), as Keras does.
        unit_name: name of the unit in ``'1ms/step'``.
    """

    #: In non-dynamic mode, seconds between two intermediate progress lines.
    static_interval = 30.0

    def __init__(self, target, width=30, verbose=1, interval=0.05, stateful_metrics=None,
                 unit_name="step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics) if stateful_metrics else set()
        self._dynamic_display = is_dynamic_display()
        self._total_width = 0
        self._seen_so_far = 0
        self._values = {}  # name -> [sum, count] (numbers) or raw value, in first-seen order
        self._start = _now()
        self._last_update = 0.0
        self._last_static = self._start

    def update(self, current, values=None, finalize=None):
        """Updates the bar to step `current`.

        Arguments:
            current: index of the current step (number of steps or samples done).
            values: list of ``(name, value)`` pairs (or a dict).
            finalize: whether this is the last update; by default, whether `current` reached
                `target`. A finalized bar prints elapsed time and time per unit and ends its line.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        items = values.items() if isinstance(values, dict) else (values or [])
        for name, value in items:
            if name in self.stateful_metrics or not _is_number(value):
                self._values[name] = value
            else:
                weight = max(current - self._seen_so_far, 1)
                acc = self._values.get(name)
                if isinstance(acc, list):
                    acc[0] += value * weight
                    acc[1] += weight
                else:
                    self._values[name] = [value * weight, weight]
        self._seen_so_far = current

        now = _now()
        if self.verbose == 1:
            self._update_bar(current, now, finalize)
        elif self.verbose == 2 and finalize:
            _write(" - %.0fs" % (now - self._start) + self._metrics_text() + "\n")

    def restart_clock(self, elapsed):
        """Makes the bar report `elapsed` seconds as already spent (a restored epoch's time)."""
        self._start = _now() - float(elapsed)

    def add(self, n, values=None):
        """Advances the bar by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _update_bar(self, current, now, finalize):
        if self._dynamic_display:
            if not finalize and now - self._last_update < self.interval:
                return
        else:
            if not finalize and now - self._last_static < self.static_interval:
                return
            self._last_static = now
        self._last_update = now
        line = self._bar_text(current) + self._info_text(current, now, finalize)
        if not self._dynamic_display:
            _write(line + "\n")
            return
        previous_width, self._total_width = self._total_width, len(line)
        if previous_width > len(line):
            line += " " * (previous_width - len(line))
        _write("\r" + line + ("\n" if finalize else ""), leaves_line_open=not finalize)

    def _bar_text(self, current):
        if self.target is None:
            return "%7d/Unknown" % current
        numdigits = len(str(int(self.target)))
        bar = "%*d/%d [" % (numdigits, current, self.target)
        progress = float(current) / self.target if self.target else 1.0
        prog_width = min(int(self.width * progress), self.width)
        if prog_width > 0:
            bar += "=" * (prog_width - 1)
            bar += ">" if current < self.target else "="
        bar += "." * (self.width - prog_width) + "]"
        return bar

    def _info_text(self, current, now, finalize):
        elapsed = now - self._start
        time_per_unit = elapsed / current if current else 0.0
        if self.target is not None and not finalize:
            info = " - ETA: %s" % format_eta(time_per_unit * max(self.target - current, 0))
        else:
            info = " - %.0fs %s" % (elapsed, format_time_per_unit(time_per_unit, self.unit_name))
        return info + self._metrics_text()

    def _metrics_text(self):
        return "".join(" - %s:%s" % (name, _format_value(value))
                       for name, value in self._values.items())
