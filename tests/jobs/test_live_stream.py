"""The event stream, read over a real socket from the real ASGI server (uvicorn)."""
from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import MetricPoint, TrainingJob
from tests.jobs.test_training_flow import ready_colours, start, wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def read_events(base: str, path: str, headers: dict[str, str], timeout: float = 120) -> list[dict]:
    """All events of one connection, until the server ends the stream."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events, current = [], {}
    for raw in response:
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in current:
                events.append(current)
            current = {}
            continue
        field, _, value = line.partition(": ")
        if field in ("id", "event", "data"):
            current[field] = value
    conn.close()
    return events


def metric_ids(events: list[dict]) -> list[int]:
    return [int(e["id"]) for e in events if e["event"] == "metric"]


def test_it_streams_every_point_in_order_while_the_job_runs(celery_worker, web_server, alice_api, alice):
    dataset = ready_colours(alice_api)
    token = Token.objects.get(user=alice).key
    pk = start(alice_api, dataset, epochs=40)["id"]  # long enough to still be running when we connect

    events = read_events(web_server, f"/api/v1/jobs/{pk}/events/", {"Authorization": f"Token {token}"})

    ids = metric_ids(events)
    stored = list(MetricPoint.objects.filter(job_id=pk).order_by("id").values_list("id", flat=True))
    assert ids == stored, "every stored point once, in cursor order"
    assert ids == sorted(set(ids))
    statuses = [json.loads(e["data"])["status"] for e in events if e["event"] == "status"]
    assert statuses[-1] == "done" and "running" in statuses
    assert events[-1]["event"] == "end"
    point = json.loads(next(e for e in events if e["event"] == "metric")["data"])
    assert set(point) == {"id", "name", "split", "epoch", "step", "value", "time"}


def test_it_resumes_from_last_event_id_without_loss_or_duplicates(celery_worker, web_server, alice_api, alice):
    dataset = ready_colours(alice_api)
    token = Token.objects.get(user=alice).key
    pk = start(alice_api, dataset, epochs=3)["id"]
    wait_job(pk)
    headers = {"Authorization": f"Token {token}"}
    everything = metric_ids(read_events(web_server, f"/api/v1/jobs/{pk}/events/", headers))
    cut = everything[len(everything) // 2]

    rest = metric_ids(read_events(web_server, f"/api/v1/jobs/{pk}/events/", {**headers, "Last-Event-ID": str(cut)}))

    assert rest == [i for i in everything if i > cut]
    assert everything[: everything.index(cut) + 1] + rest == everything


def test_it_pages_the_same_points_through_the_metrics_api(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    pk = start(alice_api, dataset, epochs=2)["id"]
    wait_job(pk)
    seen, cursor = [], 0
    while True:
        body = alice_api.get(f"/api/v1/jobs/{pk}/metrics/?after={cursor}").json()
        if not body["points"]:
            break
        seen += [p["id"] for p in body["points"]]
        cursor = body["cursor"]

    assert seen == list(MetricPoint.objects.filter(job_id=pk).order_by("id").values_list("id", flat=True))
    assert body["status"] == "done"


def test_it_refuses_the_stream_to_strangers(celery_worker, web_server, alice_api, bob):
    dataset = ready_colours(alice_api)
    pk = start(alice_api, dataset, epochs=1)["id"]
    url = urllib.parse.urlsplit(web_server)
    bob_token = Token.objects.create(user=bob).key

    for headers, expected in (({}, 401), ({"Authorization": f"Token {bob_token}"}, 404)):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", f"/api/v1/jobs/{pk}/events/", headers=headers)
        response = conn.getresponse()
        assert response.status == expected
        assert "error" in json.loads(response.read())
        conn.close()


def test_its_own_entrance_sends_django_s_security_headers_and_leaves_foreign_hosts_to_django(
        web_server, alice):  # type: ignore[no-untyped-def]
    from tests.browser.test_job_log import running_job

    job = running_job(alice)
    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.DONE)
    token = Token.objects.create(user=alice).key
    url = urllib.parse.urlsplit(web_server)

    def get(path: str, **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", path, headers={"Authorization": f"Token {token}", **headers})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response, body

    ok, body = get(f"/api/v1/jobs/{job.pk}/events/")
    assert ok.status == 200 and b"event: end" in body
    assert ok.getheader("X-Content-Type-Options") == "nosniff" and ok.getheader("X-Frame-Options") == "DENY"
    assert ok.getheader("Cache-Control") == "no-cache"
    huge, body = get("/api/v1/jobs/99999999999999999999999/events/")
    assert huge.status == 404 and json.loads(body)["error"]
    foreign, _ = get(f"/api/v1/jobs/{job.pk}/events/", Host="evil.example")
    assert foreign.status == 400, "Django refuses a host not in ALLOWED_HOSTS"
