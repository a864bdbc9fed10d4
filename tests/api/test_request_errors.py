"""Malformed requests and files that are not what they claim: each refusal is a sentence that says what to fix."""

from __future__ import annotations

import pytest

TEXT = b"hello, I am a text file and certainly not a model\n" * 4
TEACHER_FORM = {"arch": "cifar_resnet8", "num_classes": "10", "input_size": "3,32,32"}


def detail(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()["detail"]


def test_a_malformed_json_body_names_the_character(api):
    body = b'{"method": "kd", "training": {"epochs": 1},}'
    text = detail(api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}))
    assert text == f"the request body is not valid JSON (at character {len(body) - 1}: Expecting property name enclosed in double quotes); send one JSON object"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_without_the_json_header_says_to_set_it(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    text = detail(api.post("/v1/jobs", content=b'{"method": "kd"}', headers=headers))
    assert "set the header 'Content-Type: application/json'" in text, text


def test_an_empty_or_non_object_json_body_says_so(api):
    json_header = {"Content-Type": "application/json"}
    assert detail(api.post("/v1/jobs", content=b"", headers=json_header)) == "the request body is empty; send a JSON object"
    assert detail(api.post("/v1/jobs", content=b"[1, 2]", headers=json_header)) == "the request body must be a JSON object, not list"


@pytest.mark.parametrize(
    ("fmt", "filename", "words"),
    [("safetensors", "model.safetensors", "not a safetensors file"), ("state_dict", "model.pt", "not a PyTorch .pt/.pth file")],
)
def test_a_text_file_uploaded_as_weights_is_called_what_it_is_not(api, fmt, filename, words):
    text = detail(api.post("/v1/teachers", files={"file": (filename, TEXT)}, data={"format": fmt, **TEACHER_FORM}))
    assert words in text and "set 'format'" in text, text
    assert not text.rstrip(".").split()[-1].isdigit(), text
