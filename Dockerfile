# One image for every process type of the Procfile (release, web, worker, beat, flower);
# docker-compose.yml picks the command. Default: the web ingress on $PORT (8000).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# var/ holds the embedded SQLite database and broker when DATABASE_URL / REDIS_URL are
# unset: the processes create it at need, but /app is root's, so it is made here for the
# runtime user.
RUN mkdir -p var \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && chown -R app:app /app/var

USER app

EXPOSE 8000

CMD ["gunicorn", "--config", "ingress/gunicorn_conf.py", "ingress:create_app()"]
