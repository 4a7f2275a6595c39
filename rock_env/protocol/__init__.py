"""Every request and response that crosses the wire, one module per topic.

The admin server (:mod:`rock_env.server`), the workers and the clients (:mod:`rock_env.remote`)
all import these models, so the two sides cannot drift apart:

* :mod:`.common`: the API prefix, the body limit, :class:`WireModel`, :class:`Ok`, :class:`Health`;
* :mod:`.errors`: :class:`ErrorBody` and the conversions to and from ``RockEnvError``;
* :mod:`.codec`: plain JSON (:func:`jsonable`) and JSON that keeps numpy arrays (:func:`pack_tree`);
* :mod:`.envs`, :mod:`.vecs`, :mod:`.sandboxes`: the client-facing routes;
* :mod:`.compat`: ROCK's own env API; :mod:`.rock`: ROCK's sandbox API;
* :mod:`.control`: admin <-> worker messages (registration, heartbeats, capacity), never sent by clients;
* :mod:`.model_service`: a harness's model request and a recorded exchange (the ModelService).

The sandbox SDK's own models (``SandboxConfig``, ``CommandResult``, ...) live in
:mod:`rock_env.sandbox.models` (a layer above this package) and travel as they are.
Everything is re-exported here, so ``from rock_env.protocol import X`` works for every model.
"""

from __future__ import annotations

from rock_env.protocol import codec, common, compat, control, envs, errors, rock, sandboxes, vecs
from rock_env.protocol import hub as hub
from rock_env.protocol import model_service as model_service
from rock_env.protocol.codec import *  # noqa: F403
from rock_env.protocol.common import *  # noqa: F403
from rock_env.protocol.compat import *  # noqa: F403
from rock_env.protocol.control import *  # noqa: F403
from rock_env.protocol.envs import *  # noqa: F403
from rock_env.protocol.errors import *  # noqa: F403
from rock_env.protocol.hub import *  # noqa: F403
from rock_env.protocol.model_service import *  # noqa: F403
from rock_env.protocol.rock import *  # noqa: F403
from rock_env.protocol.sandboxes import *  # noqa: F403
from rock_env.protocol.vecs import *  # noqa: F403

#: Every public name of every topic module.
__all__ = [
    *common.__all__,
    *errors.__all__,
    *codec.__all__,
    *envs.__all__,
    *vecs.__all__,
    *sandboxes.__all__,
    *compat.__all__,
    *control.__all__,
    *hub.__all__,
    *rock.__all__,
    *model_service.__all__,
]
