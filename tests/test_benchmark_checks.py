"""The benchmarks' result checks: a skipped torch.compile baseline must never hide a wrong fused result."""
import pytest
import torch

from benchmarks._common import UnusableBaseline, assert_close, baseline_verdict, run_pedantic


def test_non_finite_compile_output_is_an_unusable_baseline():
    expected = torch.randn(8, 16)
    with pytest.raises(UnusableBaseline, match="op infer bf16 compile"):
        assert_close(torch.full_like(expected, float("nan")), expected, "bf16", "op infer bf16 compile", baseline=True)


@pytest.mark.parametrize("baseline", [False, True])
def test_wrong_results_still_fail(baseline):
    expected = torch.randn(8, 16)
    nan = torch.full_like(expected, float("nan"))
    if not baseline:  # a fused result that is not finite fails, whatever eager computed
        with pytest.raises(AssertionError, match="non-finite"):
            assert_close(nan, expected, "bf16", "fused")
    with pytest.raises(AssertionError, match="non-finite"):  # both non-finite: not torch.compile's fault
        assert_close(nan, nan.clone(), "bf16", "x", baseline=baseline)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(expected + 1, expected, "fp32", "x", baseline=baseline)


def test_baseline_verdict_is_kept_but_a_wrong_result_raises_every_time():
    calls = []

    def unusable():
        calls.append("unusable")
        raise UnusableBaseline("why")

    def wrong():
        calls.append("wrong")
        raise AssertionError("wrong")

    verdicts = {}
    assert baseline_verdict(verdicts, ("a",), lambda: calls.append("ok")) is None
    assert baseline_verdict(verdicts, ("a",), lambda: calls.append("ok")) is None
    assert baseline_verdict(verdicts, ("b",), unusable) == "why"
    assert baseline_verdict(verdicts, ("b",), unusable) == "why"
    for _ in range(2):
        with pytest.raises(AssertionError):
            baseline_verdict(verdicts, ("c",), wrong)
    assert calls == ["ok", "unusable", "wrong", "wrong"]


def test_bf16_rows_report_their_speedup_over_fp32_fused_side_by_side():
    from benchmarks._summary import add_speedups, precision_lines

    def row(dtype, ms, **side):
        return dict(model="mixer-cifar100", mode="inference", dtype=dtype, threads=1, provider="fused", ms_per_batch=ms,
                    extra_info={}, **{f"{name}_ms_side_by_side": t for name, t in side.items()})

    fp32, bf16 = row("fp32", 40.0, eager=100.0), row("bf16", 25.0, eager=60.0, fused_fp32=45.0)
    add_speedups([fp32, bf16])
    # bf16's ratio is to the fp32 call timed beside it (45 ms), not to the fp32 row (40 ms)
    assert bf16["speedup_vs_fused_fp32"] == pytest.approx(1.8) and "speedup_vs_fused_fp32" not in fp32
    assert bf16["extra_info"]["speedup_vs_eager"] == pytest.approx(2.4)
    assert "mixer-cifar100 1t 1.80x (45.0 / 25.0 ms)" in precision_lines([fp32, bf16])[-1]
    assert precision_lines([fp32]) == []


class _Pedantic:
    """pytest-benchmark's pedantic mode, reduced to its call order: setup, then fn, each round."""

    def pedantic(self, fn, setup, rounds, warmup_rounds, iterations):
        for _ in range(warmup_rounds + rounds):
            if setup:
                setup()
            result = fn()
        return result


def test_side_by_side_calls_never_follow_the_matmul_probe():
    """Each round: the probe, an untimed call of the timed function, then the baselines, then the
    timed call; so no timed call runs right after the cache-flushing probe."""
    calls = []
    log = lambda name: lambda: calls.append(name) or name  # noqa: E731
    result, times = run_pedantic(_Pedantic(), log("fused"), rounds=2, warmup_rounds=1,
                                 side_by_side={"eager": log("eager"), "matmul": log("matmul"),
                                               "compile": log("compile")})
    assert result == "fused"
    assert calls == ["matmul", "fused", "eager", "compile", "fused"] * 3
    assert sorted(times) == ["compile", "eager", "matmul"]  # the warm-up round's calls are not timed
