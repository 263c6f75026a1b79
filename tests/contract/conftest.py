from tests.support.promtool import promtool

__all__ = ["promtool"]
