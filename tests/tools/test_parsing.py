"""The tool-call parser and the OpenAI tool schemas."""

from __future__ import annotations

import json

import pytest

from rock_env.tools.parsing import ToolCall, extract_code, format_help, parse_action
from rock_env.tools.schemas import bash_tool, python_tool, submit_tool, tool_names, validate_call

TOOLS = [bash_tool(30), submit_tool("Submit.")]


@pytest.mark.parametrize(
    ("action", "name", "arguments", "fmt"),
    [
        ("<bash>ls -la</bash>", "bash", {"command": "ls -la"}, "tag"),
        ("think first\n<bash>\necho hi\n</bash>", "bash", {"command": "echo hi"}, "tag"),
        ("<python>print(1)</python>", "python", {"code": "print(1)"}, "tag"),
        ("```bash\ncat x\n```", "bash", {"command": "cat x\n"}, "fence"),
        ("```sh\npwd\n```", "bash", {"command": "pwd\n"}, "fence"),
        ("```python\nx = 1\n```", "python", {"code": "x = 1\n"}, "fence"),
        ("```py\nx = 1\n```", "python", {"code": "x = 1\n"}, "fence"),
        ("The answer is \\boxed{\\frac{1}{2}}.", "answer", {"answer": "\\frac{1}{2}"}, "boxed"),
        ("<submit></submit>", "submit", {}, "tag"),
        ("<submit/>", "submit", {}, "tag"),
        ("<finish>done</finish>", "submit", {"answer": "done"}, "tag"),
        (
            '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>',
            "bash",
            {"command": "ls"},
            "tool_call",
        ),
        (
            '<tool_call><tool_name>bash</tool_name><arguments>{"command": "id"}</arguments></tool_call>',
            "bash",
            {"command": "id"},
            "tool_call",
        ),
        ('{"name": "bash", "arguments": {"command": "ls"}}', "bash", {"command": "ls"}, "openai"),
        ('{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}', "bash", {"command": "ls"}, "openai"),
        (
            '{"type": "function", "function": {"name": "submit", "arguments": "{}"}}',
            "submit",
            {},
            "openai",
        ),
    ],
)
def test_formats(action: str, name: str, arguments: dict[str, str], fmt: str) -> None:
    parsed = parse_action(action)
    assert parsed.ok, parsed.error
    call = parsed.calls[0]
    assert (call.name, call.arguments, call.format) == (name, arguments, fmt)


def test_assistant_message_with_tool_calls() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "submit", "arguments": "{}"}},
        ],
    }
    for action in (message, json.dumps(message)):
        parsed = parse_action(action)
        assert [c.name for c in parsed.calls] == ["bash", "submit"]
        assert [c.call_id for c in parsed.calls] == ["call_1", "call_2"]
        assert parsed.calls[0].arguments == {"command": "ls"}


def test_assistant_message_without_tool_calls_parses_its_content() -> None:
    parsed = parse_action({"role": "assistant", "content": "<bash>whoami</bash>"})
    assert parsed.calls[0].arguments == {"command": "whoami"}


def test_list_of_calls() -> None:
    parsed = parse_action([{"name": "bash", "arguments": {"command": "a"}}, {"name": "submit", "arguments": {}}])
    assert [c.name for c in parsed.calls] == ["bash", "submit"]


def test_calls_come_in_text_order_and_parsed_action_ends_after_the_first() -> None:
    text = "first <bash>one</bash> then ```bash\ntwo\n``` and <submit/>"
    parsed = parse_action(text)
    assert [c.name for c in parsed.calls] == ["bash", "bash", "submit"]
    assert [c.arguments.get("command") for c in parsed.calls[:2]] == ["one", "two\n"]
    assert parsed.parsed_action == "first <bash>one</bash>"


def test_untagged_fence_uses_the_default_tool() -> None:
    assert parse_action("```\nls\n```").error is not None
    assert parse_action("```\nls\n```", default_fence="bash").calls[0].name == "bash"
    assert parse_action("```\nx=1\n```", default_fence="python").calls[0].arguments == {"code": "x=1\n"}


def test_a_tag_inside_a_fence_is_one_call() -> None:
    parsed = parse_action("```\n<bash>ls</bash>\n```", default_fence="bash")
    assert len(parsed.calls) == 1
    assert parsed.calls[0].arguments == {"command": "ls"}


def test_last_boxed_answer_with_nested_braces() -> None:
    parsed = parse_action("first \\boxed{1} then \\boxed{a{b}c}")
    assert parsed.calls[-1].arguments == {"answer": "a{b}c"}


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        ("just text", "No tool call found"),
        ("<bash>ls", "<bash> is never closed"),
        ("```bash\nls", "never closed"),
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', '"name"'),
        ('{"name": "bash", "arguments": "{broken"}', "not valid JSON"),
        ('{"name": "bash", "arguments": [1, 2]}', "must be a JSON object"),
        ({"tool_calls": "nope"}, "must be a list"),
        ({"role": "assistant", "tool_calls": []}, "no tool call"),
        (42, "must be text or a JSON object"),
    ],
)
def test_malformed_actions_explain_what_is_wrong(action: object, fragment: str) -> None:
    parsed = parse_action(action)  # type: ignore[arg-type]
    assert not parsed.ok
    assert parsed.error is not None and fragment in parsed.error


def test_extract_code_takes_the_last_block() -> None:
    text = "```python\nold\n```\ntext\n```python\nnew\n```"
    assert extract_code(text) == "new\n"
    assert extract_code("<python>\nx = 2\n</python>") == "x = 2"
    assert extract_code("```\nplain\n```") == "plain\n"
    assert extract_code("```bash\nls\n```") is None
    assert extract_code("no code") is None


def test_tool_schemas_are_openai_function_format() -> None:
    for tool in (*TOOLS, python_tool(5)):
        assert tool["type"] == "function"
        fn = tool["function"]
        assert set(fn) == {"name", "description", "parameters"}
        assert fn["parameters"]["type"] == "object"
        assert set(fn["parameters"]["required"]) <= set(fn["parameters"]["properties"])
        json.dumps(tool)
    assert tool_names(TOOLS) == ["bash", "submit"]


def test_validate_call() -> None:
    ok, err = validate_call(ToolCall(name="bash", arguments={"cmd": "ls"}), TOOLS)
    assert err is None and ok.arguments == {"command": "ls"}
    _, err = validate_call(ToolCall(name="rm", arguments={}), TOOLS)
    assert err is not None and "Unknown tool 'rm'" in err and "bash" in err
    _, err = validate_call(ToolCall(name="bash", arguments={}), TOOLS)
    assert err is not None and "needs the argument 'command'" in err
    _, err = validate_call(ToolCall(name="bash", arguments={"command": 3}), TOOLS)
    assert err is not None and "must be a string" in err
    _, err = validate_call(ToolCall(name="bash", arguments={"command": "ls", "timeout": True}), TOOLS)
    assert err is not None and "boolean" in err
    _, err = validate_call(ToolCall(name="bash", arguments={"command": "ls", "color": "red"}), TOOLS)
    assert err is not None and "no argument 'color'" in err
    ok, err = validate_call(ToolCall(name="submit", arguments={"answer": "x"}), TOOLS)
    assert err is None and ok.arguments == {}


def test_format_help_shows_each_tool() -> None:
    text = format_help(["bash", "submit", "custom"])
    assert "<bash>" in text and "<submit>" in text and '"name": "custom"' in text
