"""Length-bucketed batches: every example once per epoch, far less padding than random batches,
still shuffled between epochs, and a function of (seed, epoch) only (resume replays it)."""
import random

from app.ml import data as D


def _lengths(n=2000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(5, 120) for _ in range(n)]


def _padded_tokens(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_bucketed_epoch_covers_every_example_once_in_full_batches():
    lengths = _lengths(2003)
    batches = D.epoch_batches(2003, 16, seed=1, epoch=1, lengths=lengths)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(2003))
    assert len(batches) == len(D.epoch_batches(2003, 16, 1, 1))  # steps per epoch unchanged
    assert sum(len(b) < 16 for b in batches) == 1


def test_bucketing_cuts_padding_and_stays_random():
    lengths = _lengths()
    plain = D.epoch_batches(2000, 16, 1, 1)
    bucketed = D.epoch_batches(2000, 16, 1, 1, lengths)
    assert _padded_tokens(bucketed, lengths) < 0.7 * _padded_tokens(plain, lengths)
    # batch lengths are not sorted over the epoch, and epochs differ
    first = [max(lengths[i] for i in b) for b in bucketed]
    assert first != sorted(first) and first != sorted(first, reverse=True)
    assert bucketed != D.epoch_batches(2000, 16, 1, 2, lengths)
    assert bucketed == D.epoch_batches(2000, 16, 1, 1, lengths)  # resume replays the epoch


def test_evaluation_batches_take_each_example_once():
    lengths = _lengths(130)
    batches = D.by_length(lengths, 64)
    assert sorted(i for b in batches for i in b) == list(range(130))


def test_shard_batches_cut_each_batch_into_shares_and_pad_empty_ones():
    from app.ml.data import shard_batches

    batches = [[5, 1, 7, 3, 0], [2, 9], [4]]
    shares = [shard_batches(batches, rank, 2) for rank in (0, 1)]
    assert shares[0] == ([[5, 1], [2], [4]], [False, False, True])  # [4] pads rank 0's empty share
    assert shares[1] == ([[7, 3, 0], [9], [4]], [False, False, False])
    for b, batch in enumerate(batches):  # the real shares rebuild each batch, in order
        assert [i for r in (0, 1) if not shares[r][1][b] for i in shares[r][0][b]] == batch
    assert shard_batches(batches, 0, 1) == (batches, [False] * 3)
