"""Every call of ROCK's Sandbox client that rock-env serves, made with the real rl-rock SDK.

Writes one JSON object: what each call returned (or the error it raised). ROCK_BASE_URL names
the admin; argv[1] is a scratch directory on this host (the upload's source; all_calls.json is written there).
"""

import asyncio
import json
import os
import sys

import httpx
from rock.actions import (
    CloseBashSessionRequest,
    Command,
    CreateBashSessionRequest,
    ReadFileRequest,
    UploadMode,
    UploadRequest,
    WriteFileRequest,
)
from rock.sdk.common.exceptions import BadRequestRockError
from rock.sdk.sandbox.client import RunMode, Sandbox
from rock.sdk.sandbox.config import SandboxConfig


async def error_of(coro):
    try:
        await coro
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def main(scratch):
    out = {}
    config = SandboxConfig(
        image="python:3.11",
        memory="1g",
        cpus=1.0,
        startup_timeout=60,
        user_id="u-1",
        experiment_id="exp-1",
        namespace="ns-1",
    )
    sb = Sandbox(config)
    await sb.start()
    out["sandbox_id"] = sb.sandbox_id
    out["status"] = (await sb.get_status()).model_dump(mode="json")
    out["is_alive"] = (await sb.is_alive()).is_alive

    await sb.create_session(CreateBashSessionRequest(session="s1", env={"FOO": "bar"}))
    out["arun"] = (await sb.arun("echo $FOO; python3 -c 'print(6*7)'", session="s1")).model_dump()
    await sb.arun("cd /tmp && export KEPT=yes", session="s1")
    out["arun_state"] = (await sb.arun("pwd; echo $KEPT", session="s1")).output
    out["arun_tmp_session"] = (await sb.arun("echo in-a-temp-session")).output
    out["arun_failing"] = await error_of(sb.arun("(exit 3)", session="s1"))
    out["arun_after_failure"] = (await sb.arun("echo still-here", session="s1")).output

    started = asyncio.get_running_loop().time()
    nohup = await sb.arun(
        "python3 -c 'import time; time.sleep(1); print(\"nohup finished\")'",
        session="s1",
        mode=RunMode.NOHUP,
        wait_timeout=60,
        wait_interval=5,
    )
    out["nohup"] = nohup.model_dump()
    out["nohup_seconds"] = asyncio.get_running_loop().time() - started
    detached = await sb.arun(
        "echo kept-in-file", mode="nohup", output_file="/tmp/rock-out/job.log", ignore_output=True, wait_interval=5
    )
    out["nohup_detached"] = detached.model_dump()
    out["nohup_file"] = (await sb.read_file(ReadFileRequest(path="/tmp/rock-out/job.log"))).content

    out["execute_argv"] = (await sb.execute(Command(command=["echo", "argv", "ok"]))).model_dump()
    out["execute_shell"] = (await sb.execute(Command(command="echo via-bash; exit 4"))).model_dump()
    out["execute_cwd_env"] = (
        await sb.execute(Command(command="echo $PWD $ZED", cwd="/tmp", env={"ZED": "z"}))
    ).model_dump()

    out["write"] = (
        await sb.write_file(WriteFileRequest(content="h\u00e9llo\nline 2\n", path="/tmp/w/x.txt"))
    ).model_dump()
    out["read"] = (await sb.read_file(ReadFileRequest(path="/tmp/w/x.txt"))).content
    out["write_bad"] = (
        await sb.write_file(WriteFileRequest(content="x", path="/tmp/w/x.txt/under-a-file"))
    ).model_dump()
    out["read_missing"] = await error_of(sb.read_file(ReadFileRequest(path="/tmp/no/such/file")))

    source = os.path.join(scratch, "payload.bin")
    with open(source, "wb") as fh:
        fh.write(bytes(range(256)) * 64)
    up = await sb.upload(
        UploadRequest(source_path=source, target_path="/tmp/up/payload.bin", upload_mode=UploadMode.DIRECT)
    )
    out["upload"] = up.model_dump()
    out["upload_check"] = (
        await sb.arun("wc -c < /tmp/up/payload.bin; sha256sum /tmp/up/payload.bin | cut -c1-16")
    ).output
    out["upload_auto"] = (
        await sb.upload(UploadRequest(source_path=source, target_path="/tmp/up/auto.bin"))
    ).model_dump()
    out["upload_missing_sandbox_path"] = (
        await sb.upload(
            UploadRequest(source_path=source, target_path="/tmp/up/payload.bin/x", upload_mode=UploadMode.DIRECT)
        )
    ).model_dump()

    base = os.environ["ROCK_BASE_URL"]
    with httpx.Client(base_url=base, timeout=60) as ours:  # the same sandbox through rock-env's own API
        out["ours_status"] = ours.get(f"/api/v1/sandboxes/{sb.sandbox_id}").json()
        out["ours_run"] = ours.post(f"/api/v1/sandboxes/{sb.sandbox_id}/run", json={"cmd": "cat /tmp/w/x.txt"}).json()
        made = ours.post("/api/v1/sandboxes", json={"config": {"memory": "512m"}}).json()
    native = Sandbox(SandboxConfig())
    await native.attach(made["id"])
    await native.create_session(CreateBashSessionRequest(session="mine"))
    out["native_via_rock"] = {
        "id": made["id"],
        "attached_id": native.sandbox_id,
        "arun": (await native.arun("echo made-by-our-api", session="mine")).output,
    }
    await native.stop()
    out["native_after_stop"] = (await native.get_status()).state

    out["close_session"] = (await sb.close_session(CloseBashSessionRequest(session="s1"))).model_dump()
    out["run_closed_session"] = await error_of(sb.arun("echo nope", session="s1"))
    out["close_unknown_session"] = await error_of(sb.close_session(CloseBashSessionRequest(session="s1")))

    await sb.stop()
    stopped = await sb.get_status()
    out["after_stop"] = {"state": stopped.state, "is_alive": stopped.is_alive}
    out["run_after_stop"] = await error_of(sb.arun("echo nope", session="s1"))
    out["delete"] = await error_of(sb.delete())
    out["status_after_delete"] = await error_of(sb.get_status())

    unmapped = Sandbox(SandboxConfig(image="no-such-registry.example/team/img:1", memory="1g", cpus=1.0))
    try:
        await unmapped.start()
        out["unmapped_image"] = "started"
    except BadRequestRockError as exc:
        out["unmapped_image"] = f"BadRequestRockError: {exc}"
    bogus = Sandbox(SandboxConfig(image="python:3.11"))
    out["attach_unknown"] = await error_of(bogus.attach("sbx-does-not-exist"))
    with open(os.path.join(scratch, "all_calls.json"), "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
