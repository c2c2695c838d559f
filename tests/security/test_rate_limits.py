"""Rate limits suit their place: none in single-user mode (one user has nobody to share with);
with keys on, one limit per key however many API processes serve it when Redis is there to
count in (else each process counts alone)."""
import os
import uuid

import pytest
from helpers import toy_csv

from app.config import get_settings
from app.errors import RateLimited
from app.ratelimit import RateLimiter, RedisRateLimiter, limiter

REDIS_URL = os.environ.get("ADAPT_TEST_BROKER_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL.startswith("redis"),
                                 reason="needs the Redis broker (ADAPT_TEST_BROKER_URL)")


def uploads(client, n: int) -> list[int]:
    return [client.post("/v1/datasets", files={"file": ("r.csv", toy_csv(12, seed=900 + i))}
                        ).status_code for i in range(n)]


def test_single_user_mode_is_not_throttled(client, monkeypatch):
    settings = get_settings()
    assert not settings.auth_enabled  # the suite's mode: auth off on loopback
    monkeypatch.setattr(settings, "rate_limit_uploads_per_minute", 1)
    limiter.reset()
    assert uploads(client, 3) == [201, 201, 201]
    monkeypatch.setattr(settings, "rate_limits", "on")  # asked for: the limit holds again
    try:
        assert uploads(client, 2) == [201, 429]
    finally:
        limiter.reset()


def test_without_redis_each_process_counts_alone():
    first, second = RateLimiter(), RateLimiter()
    for _ in range(3):
        first.take("key_a", "predict", 3)
        second.take("key_a", "predict", 3)
    with pytest.raises(RateLimited):
        first.take("key_a", "predict", 3)


@needs_redis
def test_two_limiters_sharing_redis_enforce_one_limit():
    """Two limiters with clients of their own, as two API processes have: 5 a minute in all."""
    import redis

    prefix = f"adapt:test-ratelimit:{uuid.uuid4().hex}:"
    one, two = (RedisRateLimiter(redis.Redis.from_url(REDIS_URL), prefix) for _ in range(2))
    try:
        for limiter_ in (one, two, one, two, one):
            limiter_.take("key_a", "predict", 5)
        with pytest.raises(RateLimited) as refused:
            two.take("key_a", "predict", 5)
        assert refused.value.code == "rate_limited"
        assert int(refused.value.headers["Retry-After"]) >= 1
        two.take("key_b", "predict", 5)  # another key has its own bucket
        two.take("key_a", "upload", 5)  # and another route class
    finally:
        one.reset()
    one.take("key_a", "predict", 5)  # reset empties the shared buckets
