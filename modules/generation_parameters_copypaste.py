"""A1111's old name for ``modules.infotext_utils`` (before 1.8): the same module object, so the registries
(``paste_fields``, ``registered_param_bindings``) are shared whichever name an extension imports."""

import sys

from modules import infotext_utils

sys.modules[__name__] = infotext_utils
