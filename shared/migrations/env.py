"""Alembic environment: runs on PostgreSQL and on the embedded SQLite."""

from logging.config import fileConfig

from alembic import context

from shared.db import make_engine
from shared.models import Base
from shared.settings import current

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or current().database_url


def run_migrations_online() -> None:
    engine = make_engine(url)  # no timeout: a migration's statement may run for minutes
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copy
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
