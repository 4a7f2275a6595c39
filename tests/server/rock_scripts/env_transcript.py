"""ROCK's env client (rock.make) driven through a fixed episode; writes its transcript as JSON.

usage: python env_transcript.py ENV_ID SEED OUT.json ACTION... (ROCK_BASE_URL names the admin)
"""

import json
import sys

import rock

env_id, seed, out, actions = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
env = rock.make(env_id)
transcript = {"reset": list(env.reset(seed=seed)), "steps": []}
for action in actions:
    step = env.step(action)
    transcript["steps"].append(list(step))
    if step[2] or step[3]:
        break
env.close()
with open(out, "w") as fh:
    json.dump(transcript, fh)
