"""The client compatibility table of docs/openai-compatibility.md, kept true: it is rendered from
``ROWS`` below, every row names a test that exists, every real-client test is in a row, and the
docs section must equal the rendering (the failure prints the table to paste)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "openai-compatibility.md"
START = (
    "<!-- client-table:start (generated from tests/integration/test_client_compatibility.py) -->"
)
END = "<!-- client-table:end -->"
CLIENT_FILES = (
    "tests/integration/test_client_langchain.py",
    "tests/integration/test_client_litellm.py",
    "tests/integration/test_client_instructor.py",
    "tests/integration/test_client_anthropic.py",
)

OPENAI = "tests/integration/test_openai_client.py"
TOOLS = "tests/integration/test_openai_tools.py"
RESPONSES = "tests/integration/test_responses_api.py"
LANGCHAIN, LITELLM, INSTRUCTOR, ANTHROPIC = CLIENT_FILES


@dataclass(frozen=True)
class Row:
    client: str
    operation: str
    result: str  # "works", "400: <reason>", "not supported: <reason>"
    test: str  # "path::test_function"


ROWS: tuple[Row, ...] = (
    Row(
        "openai 3.3",
        "`chat.completions.create`",
        "works",
        f"{OPENAI}::test_non_stream_escalates_then_accepts",
    ),
    Row(
        "openai 3.3",
        "`chat.completions.create(stream=True)`",
        "works",
        f"{OPENAI}::test_stream_with_include_usage",
    ),
    Row(
        "openai 3.3",
        "`chat.completions.create(tools=...)`",
        "works",
        f"{TOOLS}::test_the_tool_calling_example_round_trip",
    ),
    Row(
        "openai 3.3",
        "`chat.completions.stream` with tools",
        "works",
        f"{TOOLS}::test_the_sdk_stream_helper_assembles_the_call",
    ),
    Row(
        "openai 3.3",
        "JSON mode (`response_format: json_object`)",
        "works",
        f"{TOOLS}::test_json_mode",
    ),
    Row(
        "openai 3.3",
        "`chat.completions.parse` (structured outputs)",
        "works",
        f"{TOOLS}::test_structured_outputs_parse",
    ),
    Row(
        "openai 3.3",
        "`chat.completions.parse`, abstention",
        "works: `message.refusal`, `content: null`",
        f"{TOOLS}::test_a_structured_request_abstains_as_a_refusal_parse_surfaces",
    ),
    Row(
        "openai 3.3", "`completions.create` (legacy)", "works", f"{OPENAI}::test_legacy_completions"
    ),
    Row(
        "openai 3.3",
        "`embeddings.create`",
        "works",
        f"{TOOLS}::test_embeddings_with_the_sdk_defaults",
    ),
    Row(
        "openai 3.3",
        "`models.list`",
        "works",
        f"{OPENAI}::test_models_lists_routes_and_direct_models",
    ),
    Row(
        "openai 3.3",
        "`models.retrieve`",
        "works (404 for an unknown id)",
        f"{OPENAI}::test_models_retrieve_one_and_404_for_an_unknown_id",
    ),
    Row(
        "openai 3.3",
        "`responses.create`",
        "works",
        f"{RESPONSES}::test_a_string_input_is_answered_and_verified",
    ),
    Row(
        "openai 3.3",
        "`responses.create(stream=True)`",
        "works",
        f"{RESPONSES}::test_a_streamed_response_is_the_event_sequence",
    ),
    Row(
        "openai 3.3",
        "`responses.create` with function calls",
        "works",
        f"{RESPONSES}::test_function_calls_round_trip",
    ),
    Row(
        "openai 3.3",
        "`responses.create(store=True)`, `previous_response_id`, `reasoning`",
        "400: names the field (no conversation state is kept)",
        f"{RESPONSES}::test_what_is_not_honoured_is_a_400_naming_it",
    ),
    Row(
        "openai 3.3",
        "`responses.retrieve`",
        "not supported: 404, responses are not stored",
        f"{RESPONSES}::test_responses_are_not_stored",
    ),
    Row(
        "openai 3.3",
        "a misspelled parameter (`extra_body`)",
        "400: `unrecognized_argument` naming it",
        f"{OPENAI}::test_an_unknown_parameter_is_a_400_naming_it",
    ),
    Row(
        "openai-agents 0.25",
        "`Runner.run` with one tool, default model (Responses API)",
        "works",
        f"{RESPONSES}::test_an_agents_sdk_run_with_one_tool_on_its_default_model",
    ),
    Row(
        "langchain-openai 1.8",
        "`ChatOpenAI.invoke`",
        "works",
        f"{LANGCHAIN}::test_langchain_invoke",
    ),
    Row(
        "langchain-openai 1.8",
        "`ChatOpenAI.stream`",
        "works",
        f"{LANGCHAIN}::test_langchain_stream",
    ),
    Row(
        "langchain-openai 1.8",
        "`with_structured_output(PydanticModel)`",
        "works",
        f"{LANGCHAIN}::test_langchain_with_structured_output",
    ),
    Row(
        "langchain-openai 1.8",
        "`bind_tools([...]).invoke`",
        "works",
        f"{LANGCHAIN}::test_langchain_bind_tools",
    ),
    Row(
        "langchain-openai 1.8",
        "`ChatOpenAI(use_responses_api=True).invoke`",
        "works",
        f"{LANGCHAIN}::test_langchain_responses_api_invoke",
    ),
    Row(
        "litellm 1.83 (client)",
        "`litellm.completion(api_base=...)`",
        "works",
        f"{LITELLM}::test_litellm_completion",
    ),
    Row(
        "litellm 1.83 (client)",
        "`litellm.completion(stream=True)`",
        "works",
        f"{LITELLM}::test_litellm_completion_stream",
    ),
    Row(
        "litellm 1.83 (client)",
        "`litellm.completion(max_tokens=, temperature=)`",
        "works",
        f"{LITELLM}::test_litellm_completion_sampling_parameters",
    ),
    Row(
        "litellm 1.83 (client)",
        "`litellm.responses(api_base=...)`",
        "works",
        f"{LITELLM}::test_litellm_responses",
    ),
    Row(
        "instructor 1.17",
        "`from_openai(...)`, `response_model` (TOOLS mode)",
        "works",
        f"{INSTRUCTOR}::test_instructor_response_model_tools_mode",
    ),
    Row(
        "instructor 1.17",
        "`response_model` (JSON_SCHEMA mode)",
        "works",
        f"{INSTRUCTOR}::test_instructor_response_model_json_schema_mode",
    ),
    Row(
        "instructor 1.17",
        "`response_model`, abstention (TOOLS mode)",
        "works: raises with the refusal text",
        f"{INSTRUCTOR}::test_instructor_abstention_in_tools_mode_raises_the_refusal",
    ),
    Row(
        "instructor 1.17",
        "`response_model`, abstention (JSON_SCHEMA mode)",
        "works: raises (instructor does not read `refusal`; it fails on the null content)",
        f"{INSTRUCTOR}::test_instructor_abstention_in_json_schema_mode_is_an_error",
    ),
    Row(
        "anthropic 2.17",
        "`messages.create` (streamed and not)",
        "not supported: `/v1/messages` is not built (404)",
        f"{ANTHROPIC}::test_anthropic_messages_is_not_supported",
    ),
)


def render() -> str:
    """The table as it stands in the docs, between the markers."""
    lines = ["| Client | Operation | Result | Test |", "|---|---|---|---|"]
    for row in ROWS:
        path, name = row.test.split("::")
        lines.append(
            f"| {row.client} | {row.operation} | {row.result} | `{Path(path).name}::{name}` |"
        )
    return "\n".join(lines)


def functions_of(path: str) -> set[str]:
    """The names of the module-level test functions of a test file."""
    tree = ast.parse((ROOT / path).read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_row_names_a_test_that_exists() -> None:
    missing = []
    for row in ROWS:
        path, name = row.test.split("::")
        if not (ROOT / path).is_file() or name not in functions_of(path):
            missing.append(row.test)
    assert missing == []


def test_every_row_result_is_one_of_the_three_kinds() -> None:
    kinds = ("works", "400: ", "not supported: ")
    assert [row for row in ROWS if not row.result.startswith(kinds)] == []


def test_every_real_client_test_is_in_the_table() -> None:
    named = {row.test for row in ROWS}
    absent = [
        f"{path}::{name}"
        for path in CLIENT_FILES
        for name in sorted(functions_of(path))
        if f"{path}::{name}" not in named
    ]
    assert absent == []


def test_the_docs_table_is_the_rendering() -> None:
    text = DOC.read_text()
    assert START in text and END in text, f"{DOC} lacks the table markers"
    between = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert between == render(), f"paste this between the markers in {DOC}:\n{render()}"
