# The grader in a container, for instructors on macOS or Windows (or anyone who wants `course grade`
# away from their own files). Debian with everything the lessons' checks start.
#
#   docker build -t course-grader .
#   docker run --rm --privileged -v "$PWD/submissions:/submissions:ro" -v "$PWD/grades:/grades" \
#       course-grader grade /submissions --out /grades
#
# --privileged lets bubblewrap give each submission its own namespaces (the strongest sandbox).
# Without it, Docker's default seccomp profile forbids namespaces and `course grade` falls back to
# running each submission as its own unprivileged user; it says which in its first lines.
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates util-linux \
      bubblewrap nginx redis-server nodejs npm \
 && rm -rf /var/lib/apt/lists/*

# uv from PyPI in a venv of its own: the system Python's pip refuses installs (PEP 668).
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir uv \
 && ln -s /opt/uv/bin/uv /usr/local/bin/uv

WORKDIR /course
COPY . /course
# Bytecode compiled once, here: sandboxed graders cannot write it into the read-only environment.
RUN uv sync --frozen --compile-bytecode --python /usr/bin/python3 \
 && chmod -R o-rwx /course/solutions /course/quiz/key.toml /course/checker/checks/hidden

ENTRYPOINT ["uv", "run", "--frozen", "course"]
CMD ["--help"]
