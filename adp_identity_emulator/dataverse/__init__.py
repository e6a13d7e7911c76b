"""The Dataverse Web API slice of the emulator: one :class:`DataverseEnvironment` (state) per environment,
served by a :class:`DataverseService` at ``/api/data/v9.2/`` on the environment's own origin.

```python
state = DataverseEnvironment.from_seed(env_seed, tenant_seed)
service = DataverseService(state, origin=origin, tenant_id=tenant.id, verify=verify, directory=directory)
response = service.handle(request)
```
"""

from .errors import WebApiError
from .service import API_PATH, DataverseService
from .state import ApplicationUser, BusinessUnit, DataverseEnvironment, SecurityRole

__all__ = [
    "API_PATH",
    "ApplicationUser",
    "BusinessUnit",
    "DataverseEnvironment",
    "DataverseService",
    "SecurityRole",
    "WebApiError",
]
