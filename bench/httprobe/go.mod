module github.com/tomnomnom/httprobe

go 1.18
