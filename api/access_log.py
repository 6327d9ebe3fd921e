"""Keep secrets out of the gateway's access log.

uvicorn logs each request's path with its query string, and query strings carry secrets: the signature of a
signed output URL (``/files/…?expires=…&signature=…``), and whatever a client put there (fal's
``?fal_webhook=`` may hold the receiver's token). The log keeps the path and drops the query. Keys travel in
headers, which uvicorn never logs.
"""

import logging

ACCESS_LOGGER = "uvicorn.access"
# uvicorn.protocols.http: logger.info('%s - "%s %s HTTP/%s" %d', client, method, path_with_query, version, status)
PATH_ARG = 2


class DropQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > PATH_ARG and isinstance(full_path := args[PATH_ARG], str):
            path, question_mark, _ = full_path.partition("?")
            if question_mark:
                record.args = (*args[:PATH_ARG], f"{path}?[query omitted]", *args[PATH_ARG + 1 :])
        return True


def drop_query_strings_from_access_log() -> None:
    """Install the filter on uvicorn's access logger (once; uvicorn has configured it before it loads the app)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, DropQueryStrings) for existing in logger.filters):
        logger.addFilter(DropQueryStrings())
