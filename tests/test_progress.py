"""Long estimator work: refused up front where a timed pilot says it would take more than an hour (unless
allow_long), and reported while it runs (a log line every INTERVAL seconds; no handler added by ibkit itself)."""

import logging
import re
import time

import pytest

import ibkit
import ibkit.progress as P
from ibkit import estimators as E
from ibkit.cli import main
from ibkit.progress import Progress, Refusal, duration, number

REFUSAL = re.compile(r"(?P<work>.+) needs (?P<up>up to )?(?P<total>\S+) decoder passes, about (?P<value>[\d.e-]+) "
                     r"(?P<unit>s|minutes|hours|days) at the measured (?P<rate>\S+) passes/s on this machine; "
                     r"(?P<remedy>.+), or pass allow_long=True \(ibkit analyse: --allow-long\)$")
SECONDS = {"s": 1, "minutes": 60, "hours": 3600, "days": 86400}


@pytest.fixture(scope="module")
def vae(digits, tiny_vae):
    return tiny_vae(input_dim=digits.input_dim, latent_dim=2, seed=0).eval()


def refusal(error: pytest.ExceptionInfo) -> dict:
    """The refusal's parts, its numbers as floats; the estimate is the total over the measured rate (as rounded)."""
    m = REFUSAL.match(str(error.value))
    assert m, str(error.value)
    parts = m.groupdict()
    total, rate = float(parts["total"]), float(parts["rate"])
    estimate = float(parts["value"]) * SECONDS[parts["unit"]]
    assert estimate == pytest.approx(total / rate, rel=0.1)  # both printed to two digits
    assert estimate > P.LONG_WORK
    return {**parts, "total": total, "rate": rate}


def test_a_huge_k_is_refused_fast_naming_the_estimate(vae, digits):
    x = digits.test[:50]
    start = time.perf_counter()
    with pytest.raises(ValueError) as error:
        E.iwae(vae, x, k=10**12)
    assert time.perf_counter() - start < 5  # two chunks of the pilot, not 5e13 passes
    parts = refusal(error)
    assert parts["work"] == "iwae with k=1000000000000 on 50 rows" and parts["total"] == 5e13 and not parts["up"]
    assert parts["remedy"] == "use a smaller k or fewer rows"


def test_allow_long_runs_what_the_limit_refuses_and_gives_the_same_numbers(vae, digits, monkeypatch):
    x = digits.test[:20]
    expected = E.iwae(vae, x, k=20, chunk_size=40)  # 10 chunks of 2 rows x 20 samples
    monkeypatch.setattr(P, "LONG_WORK", 1e-9)  # every piece of work is "long" now
    with pytest.raises(ValueError) as error:
        E.iwae(vae, x, k=20, chunk_size=40)
    assert refusal(error)["total"] == 400
    assert E.iwae(vae, x, k=20, chunk_size=40, allow_long=True) == expected
    assert isinstance(E.iwae(vae, x, k=20), float)  # one chunk: done before it could be judged, so not refused
    with pytest.raises(ValueError, match="allow_long='yes' must be True or False"):
        E.iwae(vae, x, k=20, allow_long="yes")


def test_every_estimator_whose_cost_grows_with_its_samples_is_refused_the_same_way(vae, digits):
    """Totals of 1e13 passes and more: this tiny decoder runs up to ~3e7 passes/s on an idle core, at which 2e10
    (k = 1e9 on 20 rows) would take under an hour and rightly run."""
    x = digits.test[:20]
    with pytest.raises(ValueError) as error:
        E.distortion(vae, x, n_samples=10**12)
    parts = refusal(error)
    assert (parts["work"], parts["total"]) == ("distortion with n_samples=1000000000000 on 20 rows", 2e13)
    assert parts["remedy"] == "use a smaller n_samples or fewer rows"
    with pytest.raises(ValueError) as error:
        E.elbo(vae, x, n_samples=10**12)
    assert refusal(error)["total"] == 2e13
    with pytest.raises(ValueError) as error:  # may stop early: an upper bound, (stages + 2) k N
        E.posterior_correlation(vae, x, k=10**12, stages=1)
    parts = refusal(error)
    assert parts["up"] and parts["total"] == 6e13
    with pytest.raises(ValueError) as error:  # 20 rows x (1e9 steps x 8 draws + checks of 32 + 200 + 1000)
        E.amortization_gap(vae, x, max_steps=10**9)
    parts = refusal(error)
    assert parts["up"] and parts["total"] == pytest.approx(20 * (8e9 + (10**7 + 2) * 32 + 1200), rel=0.03)
    assert parts["work"] == "amortization_gap with max_steps=1000000000 and k=1000 on 20 rows"


def test_a_line_on_the_log_every_interval_while_it_runs(vae, digits, monkeypatch, caplog):
    monkeypatch.setattr(P, "INTERVAL", 0.0)  # a line at every chunk
    caplog.set_level(logging.INFO, logger="ibkit")
    E.iwae(vae, digits.test[:20], k=20, chunk_size=40)
    lines = [r.getMessage() for r in caplog.records if r.name == "ibkit.progress" and r.getMessage().startswith(
        "iwae: ")]
    done = [int(re.match(r"iwae: (\d+) of 400 decoder passes", line).group(1)) for line in lines]
    assert done[-1] == 400 and "(100.0%)" in lines[-1]
    assert set(range(40, 401, 40)) <= set(done) and done == sorted(done)  # each chunk's 2 x 20 pairs


def test_silent_and_without_handlers_unless_logging_is_configured(vae, digits, caplog):
    assert logging.getLogger("ibkit").handlers == [] and logging.getLogger("ibkit.progress").handlers == []
    with Progress("quiet", 10, "steps") as progress:
        assert progress._thread is None  # INFO is not enabled: no thread, no lines
        progress.update(10)
    assert not [r for r in caplog.records if r.name.startswith("ibkit")]


def test_the_heartbeat_logs_while_one_long_piece_runs(monkeypatch, caplog):
    monkeypatch.setattr(P, "INTERVAL", 0.05)
    caplog.set_level(logging.INFO, logger="ibkit")
    with Progress("slow", 4, "steps") as progress:
        progress.update(1)
        time.sleep(0.3)  # one long step: the thread says where it stands meanwhile
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow: ")]
    assert len(lines) >= 3 and all(line.startswith("slow: 1 of 4 steps (25.0%)") for line in lines)
    assert "about" in lines[-1] and "left" in lines[-1]


def test_the_pilot_counts_the_faster_of_its_chunks(monkeypatch):
    """The first chunk pays for warm-up: a slow first chunk and a fast second one are judged at the second's rate;
    two slow ones are refused (chunk times set by hand: 10 s, then 0.01 s or 10 s, for one pass each)."""
    monkeypatch.setattr(P, "LONG_WORK", 100.0)
    for second, refused in ((0.01, False), (10.0, True)):
        progress = Progress("w", 1000, "decoder passes", refusal=Refusal("w", "less"), show=False)
        progress.done, progress._last_update = 1, 0.0
        progress._check_estimate(1, 10.0)  # 0.1 passes/s: 10,000 s, but one more chunk is timed first
        assert progress._pilot == 1
        progress.done, progress._last_update = 2, 10.0
        if refused:
            with pytest.raises(ValueError, match=r"w needs 1000 decoder passes, about 2.8 hours at the measured 0.1 "
                                                 r"passes/s on this machine; less, or pass allow_long=True"):
                progress._check_estimate(1, 10.0 + second)
        else:
            progress._check_estimate(1, 10.0 + second)  # 100 passes/s: 10 s for the total, below the limit
            assert progress._pilot == 0
        progress.close()


def test_numbers_and_durations_as_lines_show_them():
    assert [number(v) for v in (359, 2500, 3.59e11, 1.2e5, 0.5)] == ["359", "2500", "3.6e11", "1.2e5", "0.5"]
    assert [duration(s) for s in (0.0093, 12, 210, 7560, 2e5, 3.59e11 / 1.2e5)] == [
        "0.0093 s", "12 s", "3.5 minutes", "2.1 hours", "2.3 days", "35 days"]


def test_the_command_line_refuses_a_huge_k_in_one_line_and_writes_nothing(vae, tmp_path, capsys):
    ibkit.save_checkpoint(vae, tmp_path / "vae.pt")
    out = tmp_path / "report"
    assert main(["analyse", str(tmp_path / "vae.pt"), "--data", "digits", "--k", "100000000000",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ibkit: error: iwae with k=100000000000 on 359 rows needs 3.6e13 "
                                               "decoder passes, about ")
    assert err[0].endswith("or pass allow_long=True (ibkit analyse: --allow-long)")
    assert not out.exists()
    assert logging.getLogger("ibkit").handlers == []  # the command's own handler is gone with it


def test_allow_long_at_the_command_line_runs_what_the_limit_refuses(vae, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "LONG_WORK", 0.0)  # every estimate is too long
    ibkit.save_checkpoint(vae, tmp_path / "vae.pt")
    args = ["analyse", str(tmp_path / "vae.pt"), "--data", "digits", "--k", "300", "--out", str(tmp_path / "r")]
    assert main(args) == 2 and "--allow-long" in capsys.readouterr().err
    assert main([*args, "--allow-long"]) == 0 and (tmp_path / "r" / "report.md").is_file()
