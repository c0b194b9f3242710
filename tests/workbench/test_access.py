"""Who may see and change what: login for every page and API call, owners only, staff all."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from django.test import Client
from rest_framework.test import APIClient

from datasets.models import Dataset
from tests.conftest import make_image

pytestmark = pytest.mark.django_db

PNG = make_image((200, 40, 40))


def dataset_for(owner, *, status: str = "ready", name: str = "Colours") -> Dataset:  # type: ignore[no-untyped-def]
    """A dataset row with a mean image and one thumbnail on disk, as a finished ingest leaves it."""
    dataset = Dataset.objects.create(
        owner=owner, name=name, status=status, source=Dataset.Source.ARCHIVE, source_name="colours.zip",
        image_width=20, image_height=16, channels=3, resize_mode="squash", val_percent=20, test_percent=0,
        seed=0, classes=["red", "blue"], split_counts={"train": 2, "val": 0, "test": 0},
        class_counts={"train": {"red": 1, "blue": 1}, "val": {}, "test": {}})
    (dataset.folder / "thumbs").mkdir(parents=True, exist_ok=True)
    (dataset.folder / "mean.png").write_bytes(PNG)
    (dataset.folder / "thumbs" / "0_0.png").write_bytes(PNG)
    return dataset


@pytest.fixture
def alice_dataset(alice) -> Iterator[Dataset]:  # type: ignore[no-untyped-def]
    dataset = dataset_for(alice, name="Alice's colours")
    folder = dataset.folder
    yield dataset
    shutil.rmtree(folder, ignore_errors=True)


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def session_api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_login(user)
    return client


# --- anonymous ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/datasets/", "/datasets/new/", "/datasets/{pk}/",
                                  "/datasets/{pk}/mean.png", "/datasets/{pk}/thumbs/0/0.png"])
def test_it_redirects_anonymous_visitors_of_every_page_to_the_login_page(client, alice_dataset, path):
    url = path.format(pk=alice_dataset.pk)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_it_shows_the_login_page_to_anonymous_visitors(client):
    response = client.get("/accounts/login/")

    assert response.status_code == 200
    assert b"Log in" in response.content


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/datasets/"),
    ("post", "/api/v1/datasets/"),
    ("post", "/api/v1/datasets/example/"),
    ("get", "/api/v1/datasets/{pk}/"),
    ("delete", "/api/v1/datasets/{pk}/"),
    ("get", "/api/v1/schema/?format=json"),
])
def test_it_refuses_every_api_call_without_credentials_with_a_json_error(alice_dataset, method, path):
    response = getattr(APIClient(), method)(path.format(pk=alice_dataset.pk))

    assert response.status_code in (401, 403)
    assert "json" in response["Content-Type"]  # the schema's own JSON type: application/vnd.oai.openapi+json
    assert json.loads(response.content) == {"error": "Authentication credentials were not provided.", "detail": {}}
    assert Dataset.objects.filter(pk=alice_dataset.pk).exists()
    assert Dataset.objects.count() == 1, "nothing was created"


def test_it_refuses_the_api_docs_without_credentials(client):
    response = client.get("/api/v1/docs/")

    assert response.status_code in (401, 403)
    assert b"swagger" not in response.content.lower()


def test_it_refuses_a_wrong_token(alice_dataset):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get("/api/v1/datasets/")

    assert response.status_code in (401, 403)
    assert response.json() == {"error": "Invalid token.", "detail": {}}


def test_it_answers_health_without_credentials(client):
    response = APIClient().get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- tokens ---------------------------------------------------------------------------------

def test_it_hands_out_a_token_that_then_works(alice, alice_dataset):
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "alice-password"},
                                format="json")
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")

    listed = client.get("/api/v1/datasets/")

    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()["results"]] == [alice_dataset.pk]


def test_it_hands_out_the_same_token_twice(alice):
    credentials = {"username": "alice", "password": "alice-password"}

    first = APIClient().post("/api/v1/auth/token/", credentials, format="json").json()["token"]
    second = APIClient().post("/api/v1/auth/token/", credentials, format="json").json()["token"]

    assert first == second


@pytest.mark.parametrize("credentials", [{"username": "alice", "password": "wrong"},
                                         {"username": "nobody", "password": "alice-password"}])
def test_it_refuses_a_token_for_bad_credentials(alice, credentials):
    response = APIClient().post("/api/v1/auth/token/", credentials, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Unable to log in with the given username and password.", "detail": {}}


def test_it_names_the_missing_field_when_asking_for_a_token(alice):
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("password: ")
    assert "password" in body["detail"]


# --- another user's dataset is a 404 --------------------------------------------------------

def test_it_lets_the_owner_see_her_dataset_and_its_images(alice, alice_dataset):
    client = logged_in(alice)
    pk = alice_dataset.pk

    assert client.get(f"/datasets/{pk}/").status_code == 200
    assert client.get(f"/datasets/{pk}/mean.png").status_code == 200
    assert client.get(f"/datasets/{pk}/thumbs/0/0.png").status_code == 200
    assert session_api(alice).get(f"/api/v1/datasets/{pk}/").json()["name"] == "Alice's colours"


@pytest.mark.parametrize("path", ["/datasets/{pk}/", "/datasets/{pk}/mean.png", "/datasets/{pk}/thumbs/0/0.png"])
def test_it_answers_404_for_another_users_dataset_page_and_images(bob, alice_dataset, path):
    response = logged_in(bob).get(path.format(pk=alice_dataset.pk))

    assert response.status_code == 404
    assert b"Alice" not in response.content


def test_it_answers_404_for_another_users_dataset_in_the_api(bob_api, alice_dataset):
    response = bob_api.get(f"/api/v1/datasets/{alice_dataset.pk}/")

    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "detail": {}}


def test_it_does_not_let_another_user_delete_a_dataset_through_the_api(bob_api, alice_dataset,
                                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = bob_api.delete(f"/api/v1/datasets/{alice_dataset.pk}/")

    assert response.status_code == 404
    assert response.json()["error"] == "Not found."
    assert Dataset.objects.filter(pk=alice_dataset.pk).exists()
    assert (alice_dataset.folder / "mean.png").is_file()


def test_it_does_not_let_another_user_delete_a_dataset_through_the_page(bob, alice_dataset,
                                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(f"/datasets/{alice_dataset.pk}/delete/")

    assert response.status_code == 404
    assert Dataset.objects.filter(pk=alice_dataset.pk).exists()
    assert (alice_dataset.folder / "mean.png").is_file()


def test_it_leaves_another_users_dataset_out_of_the_lists(bob, bob_api, alice_dataset):
    own = dataset_for(bob, name="Bob's shapes")
    try:
        listed = bob_api.get("/api/v1/datasets/").json()["results"]
        page = logged_in(bob).get("/datasets/").content.decode()
        dashboard = logged_in(bob).get("/").content.decode()
    finally:
        shutil.rmtree(own.folder, ignore_errors=True)

    assert [d["id"] for d in listed] == [own.pk]
    assert "Bob&#x27;s shapes" in page and "Alice" not in page
    assert "Alice" not in dashboard


def test_it_shows_staff_every_dataset(staff, alice_dataset, bob):
    own = dataset_for(bob, name="Bob's shapes")
    try:
        listed = session_api(staff).get("/api/v1/datasets/").json()["results"]
        page = logged_in(staff).get("/datasets/").content.decode()
        detail = logged_in(staff).get(f"/datasets/{alice_dataset.pk}/")
    finally:
        shutil.rmtree(own.folder, ignore_errors=True)

    assert sorted(d["id"] for d in listed) == sorted([alice_dataset.pk, own.pk])
    assert {d["owner"] for d in listed} == {"alice", "bob"}
    assert "Alice&#x27;s colours" in page and "Bob&#x27;s shapes" in page
    assert detail.status_code == 200


# --- delete ---------------------------------------------------------------------------------

def test_it_deletes_the_row_and_the_folder(alice_api, alice_dataset, django_capture_on_commit_callbacks):
    folder = alice_dataset.folder
    assert folder.is_dir()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.delete(f"/api/v1/datasets/{alice_dataset.pk}/")

    assert response.status_code == 204
    assert not Dataset.objects.filter(pk=alice_dataset.pk).exists()
    assert not folder.exists()


def test_it_deletes_from_the_page_too(alice, alice_dataset, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(alice).post(f"/datasets/{alice_dataset.pk}/delete/", follow=True)

    assert response.status_code == 200
    assert "Deleted dataset" in response.content.decode()
    assert not Dataset.objects.filter(pk=alice_dataset.pk).exists()
    assert not alice_dataset.folder.exists()


def test_it_refuses_to_delete_a_dataset_while_it_is_being_ingested(alice_api, alice_dataset,
                                                                   django_capture_on_commit_callbacks):
    Dataset.objects.filter(pk=alice_dataset.pk).update(status=Dataset.Status.RUNNING)

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.delete(f"/api/v1/datasets/{alice_dataset.pk}/")

    assert response.status_code == 409
    assert response.json() == {
        "error": "The dataset is still being ingested; delete it when the ingest has finished.", "detail": {}}
    assert Dataset.objects.filter(pk=alice_dataset.pk).exists()
    assert (alice_dataset.folder / "mean.png").is_file()


def test_it_refuses_the_page_delete_while_ingesting_with_a_message(alice, alice_dataset):
    Dataset.objects.filter(pk=alice_dataset.pk).update(status=Dataset.Status.RUNNING)

    response = logged_in(alice).post(f"/datasets/{alice_dataset.pk}/delete/", follow=True)

    assert "still being ingested" in response.content.decode()
    assert Dataset.objects.filter(pk=alice_dataset.pk).exists()


# --- schema and docs ------------------------------------------------------------------------

def test_it_serves_the_openapi_schema_to_a_logged_in_user(alice):
    response = session_api(alice).get("/api/v1/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/health/", "/api/v1/auth/token/", "/api/v1/datasets/", "/api/v1/datasets/{id}/"} <= set(paths)


def test_it_serves_the_api_docs_without_any_cdn(alice):
    response = logged_in(alice).get("/api/v1/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html.lower()
    assert "cdn" not in html.lower()
    assert "https://" not in html and "http://" not in html, "the page must work offline"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/nothing-here/", "/api/v1/jobs/1/nonsense/", "/api/v1/datasets/x/"])
def test_it_answers_unknown_api_paths_with_a_json_404(alice_api, path):
    response = alice_api.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "No API endpoint" in response.json()["error"]
