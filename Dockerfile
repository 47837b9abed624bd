FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY scheduler ./scheduler
COPY db ./db
RUN pip install --no-cache-dir .
# The example program and rewards files the docs refer to (LOYALTY_PROGRAM_FILE=/app/docs/...).
COPY docs/program.example.toml docs/rewards.example.toml ./docs/
RUN useradd --system --uid 10001 loyalty
USER loyalty
ENV LOYALTY_LOG_FORMAT=json
ENTRYPOINT ["loyalty"]
CMD ["worker"]
